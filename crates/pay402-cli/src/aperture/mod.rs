//! `pay402 config from-aperture` and `pay402 proxy --aperture`: converts an
//! Aperture configuration (YAML) into a `pay402.toml`, naming every key it
//! maps, refuses or ignores.
//!
//! Every key of Aperture's configuration (its `sample-conf.yaml` and the Go
//! structs behind it) is handled; the full table is in docs/cli.md, "Coming
//! from Aperture". A note is one of:
//!
//! - `mapped`: carried over, perhaps changed (the note says how);
//! - `refused`: not carried over; a refused *service* is left out whole
//!   (never served free or at another price), a refused service *key* leaves
//!   the service at least as strict as Aperture had it (a rate limit not
//!   enforced, a whitelist regex that stays paid);
//! - `ignored`: a setting with no bearing on who pays what (logging,
//!   profiling, timeouts of Aperture's own server).
//!
//! The conversion fails (a typed [`ApertureError`] naming the key) when the
//! file is not Aperture's or when running it would serve paid services
//! unpaid: no usable Lightning node, or `autocert`.

mod server;
mod service;
mod yaml;

use std::fmt::Write;

use serde_norway::Value;

pub use service::whitelist_path;
use yaml::Obj;

/// Why a file could not be converted; the message names the key.
///
/// ```
/// let e = pay402_cli::aperture::convert("insecure: true\nauthenticator: { disable: true }\nservices: 5").unwrap_err();
/// assert!(e.to_string().contains("services"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApertureError {
    message: String,
    notes: Vec<String>,
}

impl ApertureError {
    /// The notes on the keys read before the conversion stopped.
    ///
    /// ```
    /// let e = pay402_cli::aperture::convert("insecure: true\nlogging: {}\n").unwrap_err();
    /// assert!(e.notes().iter().any(|n| n.starts_with("logging: ignored")));
    /// ```
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// A stable reason for tools that report it (`pay402 proxy --aperture`
/// exits 2 with the message).
///
/// ```
/// use pay402_core::problem::Reason;
/// let e = pay402_cli::aperture::convert("- a list").unwrap_err();
/// assert_eq!((e.reason(), e.status()), ("invalid_aperture_config", 400));
/// ```
impl pay402_core::problem::Reason for ApertureError {
    fn reason(&self) -> &'static str {
        "invalid_aperture_config"
    }
    fn status(&self) -> u16 {
        400
    }
}

#[allow(non_snake_case)]
pub(crate) fn ApertureError(message: String) -> ApertureError {
    ApertureError {
        message,
        notes: Vec::new(),
    }
}

/// Choices the YAML cannot express.
///
/// ```
/// let o = pay402_cli::aperture::Options { lnd_rest_url: Some("https://lnd.internal:8080".into()) };
/// assert!(o.lnd_rest_url.is_some());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// lnd's REST URL (pay402 speaks REST, Aperture gRPC); default
    /// `https://<authenticator.lndhost's host>:8080`.
    pub lnd_rest_url: Option<String>,
}

/// The converted configuration and what the conversion could not carry.
#[derive(Debug)]
pub struct Converted {
    /// The `pay402.toml` text (the notes are also in it, as comments).
    pub toml: String,
    /// One line per mapped-with-a-change, refused or ignored key.
    pub notes: Vec<String>,
}

/// The largest price Aperture accepts (its lnd invoice limit), in sat.
pub(crate) const MAX_PRICE_SATS: i64 = 100_000_000 * 100_000;

/// A TOML string literal.
pub(crate) fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(crate) fn err(key: &str, what: impl std::fmt::Display) -> ApertureError {
    ApertureError(format!("{key}: {what}"))
}

/// Converts Aperture's YAML into a `pay402.toml`, with default [`Options`].
///
/// ```
/// let yaml = "listenaddr: \"localhost:8081\"\ninsecure: true\nauthenticator:\n  lndhost: \"localhost:10009\"\n  tlspath: /lnd/tls.cert\n  macdir: /lnd\nservices:\n  - name: api\n    hostregexp: '^api.example.com$'\n    address: \"127.0.0.1:9000\"\n    protocol: http\n    price: 10\n";
/// let out = pay402_cli::aperture::convert(yaml).unwrap();
/// assert!(out.toml.contains("price = { sats = 10 }"));
/// ```
pub fn convert(yaml: &str) -> Result<Converted, ApertureError> {
    convert_with(yaml, &Options::default())
}

/// The Lightning section written, and whether MPP was enabled.
pub(crate) struct Lightning {
    /// `false` with `authenticator.disable`: every service free.
    enabled: bool,
    mpp: bool,
    mpp_realm: Option<String>,
}

/// Converts Aperture's YAML into a `pay402.toml`.
///
/// ```
/// use pay402_cli::aperture::{convert_with, Options};
/// let yaml = "insecure: true\nauthenticator:\n  lndhost: \"lnd:10009\"\n  tlspath: /lnd/tls.cert\n  macdir: /lnd\nservices:\n  - name: api\n    address: \"127.0.0.1:9000\"\n";
/// let o = Options { lnd_rest_url: Some("https://lnd:8443".into()) };
/// let out = convert_with(yaml, &o).unwrap();
/// assert!(out.toml.contains("url = \"https://lnd:8443\""));
/// // No price: Aperture's default of 1 sat.
/// assert!(out.toml.contains("price = { sats = 1 }"));
/// ```
pub fn convert_with(yaml: &str, opts: &Options) -> Result<Converted, ApertureError> {
    let mut notes = Vec::new();
    convert_into(yaml, opts, &mut notes).map_err(|mut e| {
        e.notes = notes;
        e
    })
}

fn convert_into(
    yaml: &str,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Converted, ApertureError> {
    if yaml.len() > 1024 * 1024 {
        return Err(ApertureError("file over 1 MiB".into()));
    }
    let value: Value = serde_norway::from_str(yaml)
        .map_err(|e| ApertureError(format!("not an Aperture configuration: {e}")))?;
    let mut top = Obj::new("", value)
        .map_err(|_| ApertureError("not an Aperture configuration: not a mapping".into()))?;
    let mut out = String::new();

    // [server]
    let listen = top
        .str("listenaddr")?
        .unwrap_or_else(|| "127.0.0.1:8402".into());
    out.push_str("[server]\n");
    let _ = writeln!(out, "listen = {}", q(&listen));
    if let Some(mut p) = top.obj("prometheus")? {
        let enabled = p.bool("enabled")?;
        let addr = p.str("listenaddr")?;
        match (enabled, addr) {
            (true, Some(addr)) => {
                let _ = writeln!(out, "ops_listen = {}", q(&addr));
                notes.push(format!(
                    "prometheus: mapped to [server] ops_listen {addr} (/metrics with pay402's metric names, /healthz, /readyz)"
                ));
            }
            (true, None) => notes
                .push("prometheus.listenaddr: missing; /metrics is served on listenaddr".into()),
            (false, _) => notes.push("prometheus: ignored (not enabled)".into()),
        }
        p.rest(notes, "unknown key, ignored");
    }
    server::tls(&mut top, &mut out, notes)?;
    top.ignore(
        notes,
        &["debuglevel", "logging"],
        "pay402 logs to standard error; set RUST_LOG, and [server] log_format",
    );
    top.ignore(
        notes,
        &["configfile", "basedir"],
        "only the file given is read",
    );
    top.ignore(
        notes,
        &["strictverify", "invoicebatchsize"],
        "pay402 looks invoices up when a token is first used",
    );
    top.ignore(notes, &["profile"], "pay402 serves no pprof");
    top.ignore(
        notes,
        &["idletimeout", "readtimeout", "writetimeout"],
        "pay402 bounds each upstream wait with the service's timeout_secs",
    );
    top.ignore(
        notes,
        &["wspinginterval", "wspongwait"],
        "LNC's WebSocket keepalive; pay402 has no LNC",
    );
    top.ignore(notes, &["staticroot"], "pay402 serves no static files");
    if top.bool("servestatic")? {
        notes.push(
            "servestatic: refused (pay402 serves no static files: requests no service matches get 404 no_service)"
                .into(),
        );
    }
    for (k, v) in [("blocklist", top.list("blocklist")?.len())] {
        if v > 0 {
            notes.push(format!(
                "{k}: refused ({v} addresses not blocked by pay402: block them in front of the proxy)"
            ));
        }
    }
    if let Some(a) = top.obj("admin")? {
        a.rest(
            notes,
            "refused (Aperture's admin API: pay402's is [admin], with a bearer token)",
        );
    }
    if let Some(t) = top.obj("tor")? {
        t.rest(
            notes,
            "refused (no onion services: point Tor's HiddenServicePort at the proxy)",
        );
    }
    if let Some(h) = top.obj("hashmail")? {
        h.rest(
            notes,
            "refused (no Lightning Node Connect mailbox in pay402)",
        );
    }

    server::store(&mut top, &mut out, notes)?;

    let auth = top.obj("authenticator")?;
    let lightning = server::lightning(auth, opts, &mut out, notes)?;

    let services = match top.take("services") {
        Some(Value::Sequence(s)) => s,
        Some(_) => return Err(err("services", "not a list")),
        None => Vec::new(),
    };
    top.rest(notes, "unknown key, ignored");
    if services.is_empty() {
        return Err(ApertureError(
            "services: none in the Aperture configuration".into(),
        ));
    }
    let mut mpp_used = false;
    let mut refused_before: Vec<String> = Vec::new();
    let mut written = 0;
    for (i, v) in services.into_iter().enumerate() {
        let mut s = Obj::new(&format!("services[{i}]"), v)?;
        let name = s
            .str("name")?
            .ok_or_else(|| err(&format!("services[{i}].name"), "missing"))?;
        s.path = format!("services.{name}");
        match service::service(&mut s, &lightning, notes)? {
            Ok(text) => {
                if !refused_before.is_empty() {
                    notes.push(format!(
                        "services.{name}: comes after refused {}: requests they matched now reach it if its regexes match them too",
                        refused_before.join(", ")
                    ));
                }
                mpp_used |= text.contains("\"mpp\"");
                out.push_str(&text);
                written += 1;
            }
            Err(why) => {
                notes.push(format!(
                    "services.{name}: refused, service left out ({why}); its requests get 404 no_service"
                ));
                refused_before.push(name.clone());
            }
        }
        s.rest(notes, "unknown key, ignored (Aperture ignores it too)");
    }
    if written == 0 {
        return Err(ApertureError(
            "services: every service was refused (see the notes)".into(),
        ));
    }
    if mpp_used {
        let realm = lightning
            .mpp_realm
            .clone()
            .unwrap_or_else(|| listen.clone());
        out.push_str("\n[mpp]\n");
        let _ = writeln!(out, "realm = {}", q(&realm));
        out.push_str("secret = { env = \"PAY402_MPP_SECRET\" }\n");
        notes.push(format!(
            "authenticator.enablempp: mapped to [mpp] realm {realm:?}, its HMAC secret read from $PAY402_MPP_SECRET (32 bytes or more; set it)"
        ));
    }

    let mut toml = String::from(
        "# Converted from an Aperture configuration by `pay402 config from-aperture`.\n",
    );
    for n in notes.iter() {
        let _ = writeln!(toml, "# note: {n}");
    }
    toml.push('\n');
    toml.push_str(&out);
    Ok(Converted {
        toml,
        notes: notes.clone(),
    })
}
