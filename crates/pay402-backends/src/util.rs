//! Small helpers shared by the backends.

use lightning_invoice::Currency;
use pay402_core::lightning::Network;

/// A secret a node hands back as text (a preimage): read like a `String`
/// (it derefs to `str`), wiped on drop, and shown as `..` by `Debug`, so a
/// response struct deriving `Debug` never prints it.
#[allow(dead_code)] // not every feature combination uses every helper
#[derive(Clone, Default, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub(crate) struct SecretText(String);

impl std::ops::Deref for SecretText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// The BOLT11 currency for a bitcoin network.
///
/// Unlike `Currency::from(Network)`, this never hits a debug assertion for
/// networks newer than `lightning-invoice` (testnet4 uses the testnet prefix).
#[allow(dead_code)] // not every feature combination uses every helper
pub(crate) fn currency_for(network: Network) -> Currency {
    match network {
        Network::Bitcoin => Currency::Bitcoin,
        Network::Signet => Currency::Signet,
        Network::Regtest => Currency::Regtest,
        // Both testnets share the `tb` prefix.
        Network::Testnet | Network::Testnet4 => Currency::BitcoinTestnet,
    }
}

/// A short human name for a currency, for error messages.
#[allow(dead_code)]
pub(crate) fn currency_name(currency: Currency) -> &'static str {
    match currency {
        Currency::Bitcoin => "bitcoin",
        Currency::BitcoinTestnet => "testnet",
        Currency::Regtest => "regtest",
        Currency::Simnet => "simnet",
        Currency::Signet => "signet",
    }
}

/// Parses a network name as the Lightning nodes spell it.
#[cfg(any(feature = "lnd", feature = "cln", feature = "lnbits"))]
pub(crate) fn parse_network(s: &str) -> Option<pay402_core::lightning::Network> {
    use pay402_core::lightning::Network;
    match s.trim().to_ascii_lowercase().as_str() {
        "bitcoin" | "mainnet" | "main" => Some(Network::Bitcoin),
        "testnet" | "testnet3" => Some(Network::Testnet),
        "testnet4" => Some(Network::Testnet4),
        "signet" => Some(Network::Signet),
        "regtest" => Some(Network::Regtest),
        _ => None,
    }
}

/// Network variable `name` (`value` its value, `None` when unset): bitcoin
/// when unset.
#[cfg(any(feature = "lnd", feature = "cln", feature = "lnbits"))]
pub(crate) fn network_var(
    name: &str,
    value: Option<String>,
) -> Result<pay402_core::lightning::Network, String> {
    match value {
        None => Ok(pay402_core::lightning::Network::Bitcoin),
        Some(n) => parse_network(&n).ok_or_else(|| {
            format!("{name} {n:?} is not one of bitcoin, testnet, testnet4, signet, regtest")
        }),
    }
}

/// The bytes of the file named by path variable `name` (`None` when unset).
#[cfg(any(feature = "lnd", feature = "cln"))]
pub(crate) fn file_var(name: &str, path: Option<String>) -> Result<Option<Vec<u8>>, String> {
    path.map(|path| std::fs::read(&path).map_err(|e| format!("cannot read {name} {path:?}: {e}")))
        .transpose()
}

/// Helpers of every HTTP backend: loopback detection for the `http://`
/// policy, and error chains and body excerpts for messages.
#[cfg(any(
    feature = "lnd",
    feature = "cln",
    feature = "lnbits",
    feature = "bitcoind",
    feature = "esplora",
    feature = "x402",
    feature = "x402-mock"
))]
#[allow(dead_code, reason = "each HTTP backend feature uses a subset")]
pub(crate) mod http {
    use std::net::IpAddr;

    use reqwest::Url;

    /// Whether the URL's host is `localhost` or a loopback IP address.
    pub(crate) fn is_loopback(url: &Url) -> bool {
        match url.host_str() {
            Some(host) if host.eq_ignore_ascii_case("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
    }

    /// URL variable `name` (`text` its value).
    pub(crate) fn url_var(name: &str, text: &str) -> Result<Url, String> {
        Url::parse(text.trim()).map_err(|e| format!("{name} {text:?} is not a URL: {e}"))
    }

    /// Timeout variable `name` (`value` its value): `default` when unset,
    /// else a positive whole number of seconds.
    pub(crate) fn secs_var(
        name: &str,
        value: Option<String>,
        default: std::time::Duration,
    ) -> Result<std::time::Duration, String> {
        match value {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n)),
                _ => Err(format!("{name} {v:?} is not a positive whole number")),
            },
        }
    }

    /// The URL an HTTP API's relative paths are joined to: its path ends in
    /// `/` (so `join` keeps the last segment), no query, no fragment.
    pub(crate) fn api_base(mut url: Url) -> Url {
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Whether an HTTP API's `url` is `https` (else plain `http` to a
    /// loopback host), refusing other schemes, a URL without a host and a
    /// zero `timeout`; `use_instead` completes "use …" in the error for a
    /// remote `http` URL.
    pub(crate) fn api_https(
        url: &Url,
        timeout: std::time::Duration,
        use_instead: &str,
    ) -> Result<bool, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" if is_loopback(url) => false,
            "http" => {
                return Err(format!(
                    "plain http:// is only allowed to loopback hosts; use {use_instead}"
                ));
            }
            other => return Err(format!("unsupported URL scheme {other:?}")),
        };
        if url.host_str().is_none() {
            return Err("URL has no host".into());
        }
        if timeout.is_zero() {
            return Err("timeout must be positive".into());
        }
        Ok(https)
    }

    /// The HTTP client settings every backend shares: `timeout` for the
    /// connection and for each call, no redirects, pay402's user agent.
    pub(crate) fn client_builder(timeout: std::time::Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pay402-backends/", env!("CARGO_PKG_VERSION")))
    }

    /// An error and its sources, without repeats.
    pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
        let mut out = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        out
    }

    /// A printable excerpt of a (non-JSON) response body: its first 200
    /// bytes, control characters blanked.
    pub(crate) fn snippet(body: &[u8]) -> String {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_owned()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn loopback_hosts() {
            for u in [
                "http://localhost:1",
                "http://LOCALHOST:1",
                "http://127.0.0.1:1",
                "http://127.8.0.1:1",
                "http://[::1]:1",
            ] {
                assert!(is_loopback(&u.parse().unwrap()), "{u}");
            }
            for u in [
                "http://10.0.0.1:1",
                "http://example.com",
                "http://localhost.example.com",
                "http://[2001:db8::1]",
            ] {
                assert!(!is_loopback(&u.parse().unwrap()), "{u}");
            }
        }

        #[test]
        fn variables() {
            let d = std::time::Duration::from_secs(30);
            let secs = |v: Option<&str>| secs_var("X", v.map(str::to_owned), d);
            assert_eq!(secs(None), Ok(d));
            assert_eq!(secs(Some(" 5 ")).unwrap().as_secs(), 5);
            assert_eq!(
                secs(Some("0")),
                Err(r#"X "0" is not a positive whole number"#.into())
            );
            assert!(secs(Some("-1")).is_err());
            assert_eq!(
                url_var("U", " http://a.example/ ").unwrap().as_str(),
                "http://a.example/"
            );
            assert!(
                url_var("U", "not a url")
                    .unwrap_err()
                    .starts_with(r#"U "not a url" is not a URL"#)
            );
        }

        #[test]
        fn api_urls() {
            let secs = std::time::Duration::from_secs;
            let https = |u: &str| api_https(&u.parse().unwrap(), secs(5), "https://");
            assert_eq!(https("https://node.example/api"), Ok(true));
            assert_eq!(https("http://127.0.0.1:8080"), Ok(false));
            assert_eq!(
                https("http://node.example"),
                Err("plain http:// is only allowed to loopback hosts; use https://".into())
            );
            assert!(https("ftp://node.example").is_err());
            assert!(https("unix:/tmp/sock").is_err());
            assert!(api_https(&"https://n.example".parse().unwrap(), secs(0), "x").is_err());
            let base = |u: &str| api_base(u.parse().unwrap()).to_string();
            assert_eq!(
                base("https://n.example/lnbits?x=1#f"),
                "https://n.example/lnbits/"
            );
            assert_eq!(base("https://n.example/api/"), "https://n.example/api/");
        }

        #[test]
        fn chains_and_snippets() {
            let inner = std::io::Error::other("connection refused");
            let outer = std::io::Error::other(inner);
            assert_eq!(error_chain(&outer), "connection refused");
            assert_eq!(
                snippet(b" <html>\n\tbad gateway\r\n"),
                "<html>  bad gateway"
            );
            assert_eq!(snippet(&[b'x'; 500]).len(), 200);
        }
    }
}

/// HTTP and validation helpers shared by the Core Lightning and LNbits clients.
#[cfg(any(feature = "cln", feature = "lnbits"))]
pub(crate) mod client {
    use std::str::FromStr;

    use bitcoin::hashes::Hash;
    use lightning_invoice::Bolt11Invoice;
    use pay402_core::lightning::{LightningError, Network, PaymentHash, Preimage};
    use pay402_core::money::Msat;

    pub(crate) use super::http::{error_chain, snippet};
    use super::{currency_for, currency_name};

    /// Why reading a response body failed.
    #[derive(Debug)]
    pub(crate) enum ReadError {
        /// The connection failed or timed out mid-body.
        Transport(String),
        /// The body exceeded the limit.
        TooLarge(usize),
    }

    /// Reads a response body of at most `max` bytes.
    pub(crate) async fn read_limited(
        mut resp: reqwest::Response,
        max: usize,
    ) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ReadError::Transport(error_chain(&e)))?
        {
            if out.len() + chunk.len() > max {
                return Err(ReadError::TooLarge(max));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Checks a preimage a node returned for `hash`: 32 bytes of hex, not all
    /// zero, and `sha256(preimage) == hash`. The error is a human message.
    pub(crate) fn verify_preimage(
        hex: Option<&str>,
        hash: &PaymentHash,
    ) -> Result<Preimage, String> {
        let text = hex.map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Err("no preimage".into());
        }
        let preimage =
            Preimage::from_hex(text).map_err(|_| "preimage is not 64 hex digits".to_owned())?;
        if preimage.is_all_zero() {
            return Err("all-zero preimage".into());
        }
        if !preimage.matches(hash) {
            return Err("preimage does not hash to the payment hash".into());
        }
        Ok(preimage)
    }

    /// Checks an invoice a node created against the request: it parses, its
    /// hash is `hash_hex` (if given), its amount is `amount` and it is for
    /// `network`. Returns its payment hash.
    pub(crate) fn verify_created(
        bolt11: &str,
        hash_hex: Option<&str>,
        amount: Msat,
        network: Network,
    ) -> Result<PaymentHash, String> {
        let invoice = Bolt11Invoice::from_str(bolt11.trim())
            .map_err(|e| format!("invoice does not parse: {e}"))?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        if let Some(h) = hash_hex {
            let given = h
                .trim()
                .parse::<PaymentHash>()
                .map_err(|_| format!("payment_hash {h:?} is not 64 hex digits"))?;
            if given != hash {
                return Err("payment_hash differs from the invoice's".into());
            }
        }
        let expected = currency_for(network);
        if invoice.currency() != expected {
            return Err(format!(
                "invoice is for {} but the node is configured for {}",
                currency_name(invoice.currency()),
                currency_name(expected)
            ));
        }
        if invoice.amount_milli_satoshis() != Some(amount.0) {
            return Err("invoice amount differs from the request".into());
        }
        Ok(hash)
    }

    /// Decodes an invoice about to be paid: it must parse, be for `network`
    /// and carry an amount. Failures are [`LightningError::PaymentFailed`]
    /// (nothing was sent). Returns the payment hash and the amount.
    pub(crate) fn decode_for_payment(
        bolt11: &str,
        network: Network,
    ) -> Result<(PaymentHash, Msat), LightningError> {
        let failed = |reason: String| LightningError::PaymentFailed { reason };
        let invoice = Bolt11Invoice::from_str(bolt11.trim())
            .map_err(|e| failed(format!("invalid invoice: {e}")))?;
        let hash = PaymentHash(invoice.payment_hash().to_byte_array());
        let expected = currency_for(network);
        if invoice.currency() != expected {
            return Err(failed(format!(
                "invoice is for {} but the node is on {}",
                currency_name(invoice.currency()),
                currency_name(expected)
            )));
        }
        let amount = invoice
            .amount_milli_satoshis()
            .ok_or_else(|| failed("amountless invoices are not supported".into()))?;
        Ok((hash, Msat(amount)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn networks() {
            use crate::util::{network_var, parse_network};
            assert_eq!(parse_network(" Regtest"), Some(Network::Regtest));
            assert_eq!(parse_network("Bitcoin"), Some(Network::Bitcoin));
            assert_eq!(parse_network("mainnet"), Some(Network::Bitcoin));
            assert_eq!(parse_network("testnet4"), Some(Network::Testnet4));
            assert_eq!(parse_network("liquid"), None);
            assert_eq!(network_var("N", None), Ok(Network::Bitcoin));
            assert_eq!(network_var("N", Some("signet".into())), Ok(Network::Signet));
            assert_eq!(
                network_var("N", Some("simnet".into())),
                Err(
                    r#"N "simnet" is not one of bitcoin, testnet, testnet4, signet, regtest"#
                        .into()
                )
            );
        }

        #[test]
        fn preimages_are_checked() {
            let pre = Preimage::from_bytes([5; 32]);
            let hash = pre.payment_hash();
            assert!(verify_preimage(Some(&pre.to_hex()), &hash).is_ok());
            assert!(verify_preimage(Some(&pre.to_hex().to_uppercase()), &hash).is_ok());
            assert_eq!(verify_preimage(None, &hash).unwrap_err(), "no preimage");
            assert_eq!(
                verify_preimage(Some(&"0".repeat(64)), &hash).unwrap_err(),
                "all-zero preimage"
            );
            assert!(verify_preimage(Some(&"11".repeat(32)), &hash).is_err());
            assert!(verify_preimage(Some("abcd"), &hash).is_err());
        }
    }
}

/// Defines a backend module's error constructors (`config_error`, which
/// needs a `CONFIGURE` constant in the module, `unreachable`, `invalid`,
/// and for Lightning backends `rejected`), each tagging the error with the
/// backend's name and the node call that failed.
///
/// `backend_errors!(BACKEND)` builds [`LightningError`](pay402_core::lightning::LightningError)s;
/// `backend_errors!(BACKEND, ChainError)` builds
/// [`ChainError`](pay402_core::chain::ChainError)s (whose refusals carry the
/// node's code, so they have no `rejected` constructor here).
#[allow(unused_macros)] // feature sets without such a backend use none
macro_rules! backend_errors {
    ($backend:expr) => {
        $crate::util::backend_errors!($backend, LightningError);

        /// The node refused `call`.
        #[allow(dead_code)]
        fn rejected(call: &'static str, detail: impl Into<String>) -> LightningError {
            LightningError::Rejected {
                backend: $backend,
                call,
                detail: detail.into(),
            }
        }
    };
    ($backend:expr, $error:ident) => {
        /// A configuration problem (reported as call `CONFIGURE`).
        #[allow(dead_code)]
        fn config_error(detail: impl Into<String>) -> $error {
            unreachable(CONFIGURE, detail)
        }

        /// The node could not be reached for `call`.
        #[allow(dead_code)]
        fn unreachable(call: &'static str, detail: impl Into<String>) -> $error {
            $error::Unreachable {
                backend: $backend,
                call,
                detail: detail.into(),
            }
        }

        /// The node's answer to `call` does not parse or is inconsistent.
        #[allow(dead_code)]
        fn invalid(call: &'static str, detail: impl Into<String>) -> $error {
            $error::InvalidResponse {
                backend: $backend,
                call,
                detail: detail.into(),
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use backend_errors;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_mapping_covers_testnet4() {
        assert_eq!(currency_for(Network::Testnet4), Currency::BitcoinTestnet);
        assert_eq!(currency_for(Network::Regtest), Currency::Regtest);
        assert_eq!(currency_name(currency_for(Network::Bitcoin)), "bitcoin");
    }
}
