//! `pay402 config from-aperture`: converts an Aperture configuration (YAML)
//! into a `pay402.toml`, naming every key it maps, changes or refuses.
//!
//! | Aperture | pay402 |
//! |---|---|
//! | `listenaddr` | `[server] listen` |
//! | `authenticator.lndhost`, `network`, `macdir`, `tlspath` | `[lightning] kind = "lnd"` (REST on port 8080, not gRPC: check it), `network`, `macaroon = { file = "<macdir>/invoice.macaroon" }`, `tls_cert_file` |
//! | `services[].name`, `hostregexp`, `pathregexp` | `name`, `host`, `path` (same regex semantics) |
//! | `address` + `protocol` (+ `rewrite.prefix`) | `upstream = "<protocol>://<address><prefix>"` |
//! | `tlscertpath` | `upstream_ca_file` |
//! | `headers` | `add_headers` (values copied as written: move secrets to `{ env = … }`) |
//! | `capabilities` (comma list) | `l402_capabilities` |
//! | `constraints` | `l402_caveats` (`key=value`) |
//! | `timeout` | `token_lifetime_secs` |
//! | `price` > 0 | `rails = ["l402"]`, `price = { sats = … }` |
//! | `auth: off` | no rails (a free service) |
//! | `auth: freebie N` | `freebies = { requests = N, period_secs = 86400 }` |
//! | `authwhitelistpaths` `'^/x$'`, `'^/x.*$'`, `'^/x/.*$'` | `free_paths` `"/x"`, `"/x*"`, `"/x/*"` (segment prefixes: `/xy` stays paid) |
//!
//! Refused (the service is written without it, and a note says so): dynamic
//! prices, `authskipinvoicecreationpaths`, other `authwhitelistpaths`
//! regexes, `ratelimits`, MPP `authscheme`, LNC. Ignored with a note: every
//! other top-level key (TLS, Tor, hashmail, static files, logging, database
//! settings: pay402 keeps its own store, so tokens Aperture issued are not
//! carried over and clients pay once more).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

/// Why a file could not be converted.
///
/// ```
/// let e = pay402_cli::aperture::convert("services: 5").unwrap_err();
/// assert!(e.to_string().contains("services"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApertureError(String);

#[derive(Debug, Deserialize)]
struct Aperture {
    listenaddr: Option<String>,
    authenticator: Option<Authenticator>,
    #[serde(default)]
    services: Vec<ApService>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
struct Authenticator {
    network: Option<String>,
    #[serde(default)]
    disable: bool,
    lndhost: Option<String>,
    tlspath: Option<String>,
    macdir: Option<String>,
    passphrase: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApService {
    name: String,
    hostregexp: Option<String>,
    pathregexp: Option<String>,
    address: String,
    protocol: Option<String>,
    auth: Option<String>,
    authscheme: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    rewrite: Option<Rewrite>,
    tlscertpath: Option<String>,
    capabilities: Option<String>,
    #[serde(default)]
    constraints: BTreeMap<String, serde_norway::Value>,
    timeout: Option<i64>,
    price: Option<i64>,
    #[serde(default)]
    authwhitelistpaths: Vec<String>,
    #[serde(default)]
    authskipinvoicecreationpaths: Vec<String>,
    ratelimits: Option<serde_norway::Value>,
    dynamicprice: Option<DynamicPrice>,
}

#[derive(Debug, Deserialize)]
struct Rewrite {
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DynamicPrice {
    #[serde(default)]
    enabled: bool,
}

/// The converted configuration and what the conversion could not carry.
#[derive(Debug)]
pub struct Converted {
    /// The `pay402.toml` text (the notes are also in it, as comments).
    pub toml: String,
    /// One line per changed, refused or ignored key.
    pub notes: Vec<String>,
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Converts Aperture's YAML into a `pay402.toml`.
///
/// ```
/// let yaml = "listenaddr: \"localhost:8081\"\nauthenticator:\n  lndhost: \"localhost:10009\"\nservices:\n  - name: api\n    hostregexp: '^api.example.com$'\n    address: \"127.0.0.1:9000\"\n    protocol: http\n    price: 10\n";
/// let out = pay402_cli::aperture::convert(yaml).unwrap();
/// assert!(out.toml.contains("price = { sats = 10 }"));
/// ```
pub fn convert(yaml: &str) -> Result<Converted, ApertureError> {
    if yaml.len() > 1024 * 1024 {
        return Err(ApertureError("file over 1 MiB".into()));
    }
    let ap: Aperture = serde_norway::from_str(yaml)
        .map_err(|e| ApertureError(format!("not an Aperture configuration: {e}")))?;
    let mut notes = Vec::new();
    let mut out = String::new();

    out.push_str("[server]\n");
    let _ = writeln!(
        out,
        "listen = {}",
        q(ap.listenaddr.as_deref().unwrap_or("127.0.0.1:8402"))
    );
    out.push_str("\n[store]\nurl = \"sqlite://pay402.sqlite\"\n");
    notes.push(
        "store: pay402 keeps its own SQLite store; tokens Aperture issued are not carried over"
            .into(),
    );

    let mut lightning = false;
    match &ap.authenticator {
        Some(a) if a.disable => {
            notes.push("authenticator.disable: every service is written free".into())
        }
        Some(a) if a.passphrase.is_some() && a.lndhost.is_none() => {
            notes.push("authenticator: LNC is not supported; configure [lightning] by hand".into())
        }
        Some(a) => {
            let host = a.lndhost.as_deref().unwrap_or("localhost:10009");
            let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
            let network = match a.network.as_deref().unwrap_or("mainnet") {
                "mainnet" | "bitcoin" => "bitcoin",
                "testnet" => "testnet",
                "signet" => "signet",
                "regtest" | "simnet" => {
                    if a.network.as_deref() == Some("simnet") {
                        notes.push("authenticator.network: simnet written as regtest".into());
                    }
                    "regtest"
                }
                other => {
                    notes.push(format!(
                        "authenticator.network: {other:?} unknown, written as bitcoin"
                    ));
                    "bitcoin"
                }
            };
            out.push_str("\n[lightning]\nkind = \"lnd\"\n");
            let _ = writeln!(out, "url = {}", q(&format!("https://{hostname}:8080")));
            let _ = writeln!(out, "network = {}", q(network));
            if let Some(dir) = &a.macdir {
                let _ = writeln!(
                    out,
                    "macaroon = {{ file = {} }}",
                    q(&format!("{}/invoice.macaroon", dir.trim_end_matches('/')))
                );
            }
            if let Some(tls) = &a.tlspath {
                let _ = writeln!(out, "tls_cert_file = {}", q(tls));
            }
            notes.push(format!(
                "authenticator.lndhost {host}: pay402 uses lnd's REST API, written as https://{hostname}:8080; check the port"
            ));
            lightning = true;
        }
        None => notes.push("no authenticator: services are written free".into()),
    }

    for key in ap.other.keys() {
        notes.push(format!("{key}: not used by pay402 (ignored)"));
    }

    if ap.services.is_empty() {
        return Err(ApertureError(
            "no services in the Aperture configuration".into(),
        ));
    }
    for s in &ap.services {
        service(&mut out, &mut notes, s, lightning);
    }

    let mut toml = String::from(
        "# Converted from an Aperture configuration by `pay402 config from-aperture`.\n",
    );
    for n in &notes {
        let _ = writeln!(toml, "# note: {n}");
    }
    toml.push('\n');
    toml.push_str(&out);
    Ok(Converted { toml, notes })
}

fn service(out: &mut String, notes: &mut Vec<String>, s: &ApService, lightning: bool) {
    let name = &s.name;
    out.push_str("\n[[services]]\n");
    let _ = writeln!(out, "name = {}", q(name));
    if let Some(h) = &s.hostregexp {
        let _ = writeln!(out, "host = {}", q(h));
    }
    if let Some(p) = &s.pathregexp {
        let _ = writeln!(out, "path = {}", q(p));
    }
    let protocol = s.protocol.as_deref().unwrap_or("http");
    let prefix = s
        .rewrite
        .as_ref()
        .and_then(|r| r.prefix.as_deref())
        .unwrap_or("");
    let _ = writeln!(
        out,
        "upstream = {}",
        q(&format!("{protocol}://{}{prefix}", s.address))
    );
    if let Some(ca) = &s.tlscertpath {
        let _ = writeln!(out, "upstream_ca_file = {}", q(ca));
    }
    if !s.headers.is_empty() {
        let items: Vec<String> = s
            .headers
            .iter()
            .map(|(k, v)| format!("{} = {}", q(k), q(v)))
            .collect();
        let _ = writeln!(out, "add_headers = {{ {} }}", items.join(", "));
        notes.push(format!(
            "services.{name}.headers: copied as written; move secrets to {{ env = \"...\" }}"
        ));
    }
    if let Some(caps) = &s.capabilities {
        let list: Vec<String> = caps
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(q)
            .collect();
        let _ = writeln!(out, "l402_capabilities = [{}]", list.join(", "));
    }
    if !s.constraints.is_empty() {
        let list: Vec<String> = s
            .constraints
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_norway::Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                q(&format!("{k}={v}"))
            })
            .collect();
        let _ = writeln!(out, "l402_caveats = [{}]", list.join(", "));
    }
    if let Some(t) = s.timeout.filter(|t| *t > 0) {
        let _ = writeln!(out, "token_lifetime_secs = {t}");
    }
    let mut free = Vec::new();
    for re in &s.authwhitelistpaths {
        match whitelist_path(re) {
            Some(p) => free.push(q(&p)),
            None => notes.push(format!(
                "services.{name}.authwhitelistpaths {re:?}: not a plain path or prefix, refused (the path stays paid)"
            )),
        }
    }
    if !free.is_empty() {
        let _ = writeln!(out, "free_paths = [{}]", free.join(", "));
    }
    for (key, present) in [
        (
            "authskipinvoicecreationpaths",
            !s.authskipinvoicecreationpaths.is_empty(),
        ),
        ("ratelimits", s.ratelimits.is_some()),
        (
            "authscheme",
            s.authscheme.as_deref().is_some_and(|a| a != "l402"),
        ),
    ] {
        if present {
            notes.push(format!("services.{name}.{key}: not supported, refused"));
        }
    }
    let auth = s
        .auth
        .as_deref()
        .unwrap_or("on")
        .trim()
        .to_ascii_lowercase();
    if auth == "off" || !lightning {
        if auth == "off" {
            notes.push(format!("services.{name}: auth off, written free"));
        }
        return;
    }
    if s.dynamicprice.as_ref().is_some_and(|d| d.enabled) {
        notes.push(format!(
            "services.{name}.dynamicprice: Aperture's gRPC pricer is not supported; written free — set a price or a pricer before use"
        ));
        return;
    }
    match s.price {
        Some(p) if p > 0 => {
            out.push_str("rails = [\"l402\"]\n");
            let _ = writeln!(out, "price = {{ sats = {p} }}");
        }
        _ => {
            notes.push(format!(
                "services.{name}.price: missing or 0; written free — set a price before use"
            ));
            return;
        }
    }
    if let Some(n) = auth.strip_prefix("freebie").map(str::trim) {
        match n.parse::<u32>() {
            Ok(n) if n > 0 => {
                let _ = writeln!(out, "freebies = {{ requests = {n}, period_secs = 86400 }}");
                notes.push(format!(
                    "services.{name}.auth freebie {n}: written as {n} per client address per day"
                ));
            }
            _ => notes.push(format!(
                "services.{name}.auth {auth:?}: not understood, no freebies"
            )),
        }
    }
}

/// The pay402 free path an Aperture whitelist regex means, when it is a
/// plain path (`^/x$`) or prefix (`^/x.*$`, `^/x/.*$`).
///
/// ```
/// use pay402_cli::aperture::whitelist_path;
/// assert_eq!(whitelist_path("^/health$").as_deref(), Some("/health"));
/// assert_eq!(whitelist_path("^/free.*$").as_deref(), Some("/free*"));
/// assert_eq!(whitelist_path("^/free/.*$").as_deref(), Some("/free/*"));
/// assert_eq!(whitelist_path("^/(a|b)$"), None);
/// ```
pub fn whitelist_path(re: &str) -> Option<String> {
    let body = re.strip_prefix('^')?;
    let (stem, prefix) =
        if let Some(s) = body.strip_suffix(".*$").or_else(|| body.strip_suffix(".*")) {
            (s, true)
        } else {
            (body.strip_suffix('$')?, false)
        };
    let stem = stem.replace("\\.", ".").replace("\\-", "-");
    let plain = stem.starts_with('/')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'));
    if !plain || stem.split('/').any(|seg| seg == "." || seg == "..") {
        return None;
    }
    let stem = if prefix {
        stem.trim_end_matches('/').to_owned()
    } else {
        stem
    };
    match (
        prefix,
        body.strip_suffix(".*$")
            .or_else(|| body.strip_suffix(".*"))
            .is_some_and(|s| s.ends_with('/')),
    ) {
        (true, true) => Some(format!("{stem}/*")),
        (true, false) => Some(format!("{stem}*")),
        (false, _) => Some(stem),
    }
}
