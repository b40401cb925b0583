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

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_norway::Value;

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

#[allow(non_snake_case)]
fn ApertureError(message: String) -> ApertureError {
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
const MAX_PRICE_SATS: i64 = 100_000_000 * 100_000;

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn err(key: &str, what: impl std::fmt::Display) -> ApertureError {
    ApertureError(format!("{key}: {what}"))
}

/// A YAML mapping being read key by key; the keys not taken are reported.
struct Obj {
    path: String,
    map: BTreeMap<String, Value>,
}

impl Obj {
    fn new(path: &str, v: Value) -> Result<Obj, ApertureError> {
        let Value::Mapping(m) = v else {
            return Err(err(path, "not a mapping"));
        };
        let mut map = BTreeMap::new();
        for (k, v) in m {
            let Value::String(k) = k else {
                return Err(err(path, "a key is not a string"));
            };
            map.insert(k, v);
        }
        Ok(Obj {
            path: path.to_owned(),
            map,
        })
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn take(&mut self, k: &str) -> Option<Value> {
        self.map.remove(k).filter(|v| !v.is_null())
    }

    /// A scalar as text (Go's YAML reads numbers into string fields too).
    fn str(&mut self, k: &str) -> Result<Option<String>, ApertureError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(err(&self.key(k), "not a string")),
        }
    }

    fn bool(&mut self, k: &str) -> Result<bool, ApertureError> {
        match self.take(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(err(&self.key(k), "not true or false")),
        }
    }

    fn int(&mut self, k: &str) -> Result<Option<i64>, ApertureError> {
        match self.take(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| err(&self.key(k), "not an integer")),
            Some(_) => Err(err(&self.key(k), "not an integer")),
        }
    }

    fn obj(&mut self, k: &str) -> Result<Option<Obj>, ApertureError> {
        let key = self.key(k);
        self.take(k).map(|v| Obj::new(&key, v)).transpose()
    }

    fn list(&mut self, k: &str) -> Result<Vec<Value>, ApertureError> {
        match self.take(k) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(s)) => Ok(s),
            Some(_) => Err(err(&self.key(k), "not a list")),
        }
    }

    fn str_list(&mut self, k: &str) -> Result<Vec<String>, ApertureError> {
        let key = self.key(k);
        self.list(k)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(err(&key, "an entry is not a string")),
            })
            .collect()
    }

    /// A mapping of scalars, as text, in key order.
    fn str_map(&mut self, k: &str) -> Result<Vec<(String, String)>, ApertureError> {
        let Some(mut o) = self.obj(k)? else {
            return Ok(Vec::new());
        };
        let keys: Vec<String> = o.map.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let v = o.str(&key)?.unwrap_or_default();
            out.push((key, v));
        }
        Ok(out)
    }

    /// Notes every key not taken: `what` says what became of it.
    fn rest(self, notes: &mut Vec<String>, what: &str) {
        for k in self.map.keys() {
            notes.push(format!("{}: {what}", self.key(k)));
        }
    }

    /// Ignores the listed keys, with `why` as their note.
    fn ignore(&mut self, notes: &mut Vec<String>, keys: &[&str], why: &str) {
        for k in keys {
            if self.take(k).is_some() {
                notes.push(format!("{}: ignored ({why})", self.key(k)));
            }
        }
    }
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
struct Lightning {
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
    tls(&mut top, &mut out, notes)?;
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

    store(&mut top, &mut out, notes)?;

    let auth = top.obj("authenticator")?;
    let lightning = lightning(auth, opts, &mut out, notes)?;

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
        match service(&mut s, &lightning, notes)? {
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

/// `insecure`, `autocert`, `servername`: Aperture serves TLS unless
/// `insecure`, from `<basedir>/tls.cert` and `tls.key`.
fn tls(top: &mut Obj, out: &mut String, notes: &mut Vec<String>) -> Result<(), ApertureError> {
    let insecure = top.bool("insecure")?;
    let autocert = top.bool("autocert")?;
    let servername = top.str("servername")?;
    let basedir = top.map.get("basedir").and_then(|v| match v {
        Value::String(s) => Some(s.trim_end_matches('/').to_owned()),
        _ => None,
    });
    if insecure {
        if autocert {
            notes.push("autocert: ignored (insecure: true)".into());
        }
        if servername.is_some() {
            notes.push("servername: ignored (insecure: true)".into());
        }
        return Ok(());
    }
    if autocert {
        return Err(err(
            "autocert",
            "Let's Encrypt certificates are not built into pay402: put a TLS terminator in front and set insecure: true, or convert with `pay402 config from-aperture` and set [server.tls]",
        ));
    }
    let dir = basedir.unwrap_or_else(|| match std::env::var("HOME") {
        Ok(h) => format!("{}/.aperture", h.trim_end_matches('/')),
        Err(_) => "~/.aperture".into(),
    });
    out.push_str("\n[server.tls]\n");
    let _ = writeln!(out, "cert_file = {}", q(&format!("{dir}/tls.cert")));
    let _ = writeln!(out, "key_file = {}", q(&format!("{dir}/tls.key")));
    notes.push(format!(
        "insecure: false: mapped to [server.tls] with Aperture's {dir}/tls.cert and tls.key (pay402 does not create them: Aperture did on its first start)"
    ));
    if servername.is_some() {
        notes.push("servername: ignored (only for autocert)".into());
    }
    Ok(())
}

/// `dbbackend` and its section: PostgreSQL maps to `[store]`; SQLite to a
/// pay402 file beside Aperture's; etcd is refused.
fn store(top: &mut Obj, out: &mut String, notes: &mut Vec<String>) -> Result<(), ApertureError> {
    let backend = top.str("dbbackend")?.unwrap_or_else(|| "sqlite".into());
    let sqlite = top.obj("sqlite")?;
    let postgres = top.obj("postgres")?;
    let etcd = top.obj("etcd")?;
    let not_selected = |o: Option<Obj>, name: &str, notes: &mut Vec<String>| {
        if o.is_some() {
            notes.push(format!(
                "{name}: ignored (dbbackend is {backend:?}, not {name})"
            ));
        }
    };
    out.push_str("\n[store]\n");
    let carried = "tokens Aperture issued are not carried over (their root keys stay in its database): clients pay once more";
    match backend.as_str() {
        "postgres" => {
            let mut p = postgres.ok_or_else(|| err("postgres", "missing (dbbackend: postgres)"))?;
            let host = p.str("host")?.unwrap_or_else(|| "localhost".into());
            let port = p.int("port")?.unwrap_or(5432);
            let user = p
                .str("user")?
                .ok_or_else(|| err("postgres.user", "missing"))?;
            let db = p
                .str("dbname")?
                .ok_or_else(|| err("postgres.dbname", "missing"))?;
            let ssl = p.bool("requireSSL")? | p.bool("requiressl")?;
            let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1");
            let mode = match (ssl, loopback) {
                (true, _) => "?sslmode=require",
                (false, true) => "?sslmode=disable",
                (false, false) => "",
            };
            let url = format!("postgres://{user}@{host}:{port}/{db}{mode}");
            let _ = writeln!(out, "url = {}", q(&url));
            if p.str("password")?.is_some() {
                out.push_str("password = { env = \"PAY402_STORE_PASSWORD\" }\n");
                notes.push(
                    "postgres.password: mapped to [store] password from $PAY402_STORE_PASSWORD (pay402 reads no secret from its file: set it)"
                        .into(),
                );
            }
            if let Some(n) = p.int("maxconnections")?.filter(|n| *n > 0) {
                let _ = writeln!(out, "max_connections = {n}");
            }
            if !ssl && !loopback {
                notes.push(
                    "postgres.requireSSL: false: pay402 connects to a remote PostgreSQL with sslmode=verify-full".into(),
                );
            }
            p.ignore(notes, &["skipmigrations"], "pay402 migrates its own tables");
            p.rest(notes, "unknown key, ignored");
            notes.push(format!(
                "postgres: mapped to [store] url {url} (pay402's own tables beside Aperture's; {carried})"
            ));
            not_selected(sqlite, "sqlite", notes);
            not_selected(etcd, "etcd", notes);
        }
        "sqlite" => {
            let file = match sqlite {
                Some(mut s) => {
                    let f = s.str("dbfile")?;
                    s.ignore(notes, &["skipmigrations"], "pay402 migrates its own tables");
                    s.rest(notes, "unknown key, ignored");
                    f
                }
                None => None,
            };
            let path = match file.as_deref().and_then(|f| f.rsplit_once('/')) {
                Some((dir, _)) if !dir.is_empty() => format!("{dir}/pay402.sqlite"),
                _ => "pay402.sqlite".into(),
            };
            let _ = writeln!(out, "url = {}", q(&format!("sqlite://{path}")));
            notes.push(format!(
                "sqlite: mapped to [store] url sqlite://{path}, pay402's own file ({carried})"
            ));
            not_selected(postgres, "postgres", notes);
            not_selected(etcd, "etcd", notes);
        }
        "etcd" => {
            out.push_str("url = \"sqlite://pay402.sqlite\"\n");
            notes.push(format!(
                "dbbackend: etcd refused (pay402 has no etcd store): written as sqlite://pay402.sqlite; use PostgreSQL to share one store between instances ({carried})"
            ));
            drop(etcd);
            not_selected(sqlite, "sqlite", notes);
            not_selected(postgres, "postgres", notes);
        }
        other => {
            return Err(err(
                "dbbackend",
                format!("{other:?} is not sqlite, postgres or etcd"),
            ));
        }
    }
    Ok(())
}

/// `authenticator`: lnd over REST, or `disable`; LNC is refused.
fn lightning(
    auth: Option<Obj>,
    opts: &Options,
    out: &mut String,
    notes: &mut Vec<String>,
) -> Result<Lightning, ApertureError> {
    let Some(mut a) = auth else {
        return Err(err(
            "authenticator",
            "missing (Aperture needs lndhost, tlspath and macdir, or disable: true)",
        ));
    };
    let disable = a.bool("disable")?;
    let network = a.str("network")?;
    let lndhost = a.str("lndhost")?;
    let tlspath = a.str("tlspath")?;
    let macdir = a.str("macdir")?;
    let passphrase = a.str("passphrase")?;
    let mpp = a.bool("enablempp")?;
    let mpp_realm = a.str("mpprealm")?;
    if a.bool("enablesessions")? {
        notes.push(
            "authenticator.enablesessions: refused (pay402's MPP has charge only, no prepaid sessions)".into(),
        );
    }
    a.ignore(
        notes,
        &["sessiondepositmultiplier", "sessionidletimeout"],
        "MPP sessions are not offered",
    );
    let lnc_keys = ["mailboxaddress", "devserver"];
    if disable {
        a.ignore(notes, &lnc_keys, "authenticator.disable");
        a.rest(notes, "unknown key, ignored");
        for (k, v) in [
            ("lndhost", &lndhost),
            ("tlspath", &tlspath),
            ("macdir", &macdir),
            ("passphrase", &passphrase),
            ("network", &network),
        ] {
            if v.is_some() {
                notes.push(format!(
                    "authenticator.{k}: ignored (authenticator.disable)"
                ));
            }
        }
        notes.push("authenticator.disable: mapped: every service is written free".into());
        return Ok(Lightning {
            enabled: false,
            mpp: false,
            mpp_realm: None,
        });
    }
    let Some(host) = lndhost else {
        let why = if passphrase.is_some() {
            "missing: Lightning Node Connect (passphrase) is not supported by pay402; give lnd's lndhost, tlspath and macdir"
        } else {
            "missing (Aperture needs it too)"
        };
        return Err(err("authenticator.lndhost", why));
    };
    if passphrase.is_some() {
        notes.push(
            "authenticator.passphrase: refused (Lightning Node Connect is not supported): lnd is reached directly at lndhost".into(),
        );
    }
    a.ignore(notes, &lnc_keys, "Lightning Node Connect is not supported");
    a.rest(notes, "unknown key, ignored");
    let net = match network.as_deref().unwrap_or("mainnet") {
        "mainnet" | "bitcoin" => "bitcoin",
        "testnet" => "testnet",
        "testnet4" => "testnet4",
        "signet" => "signet",
        "regtest" => "regtest",
        "simnet" => {
            notes.push("authenticator.network: simnet mapped to regtest".into());
            "regtest"
        }
        other => return Err(err("authenticator.network", format!("{other:?} unknown"))),
    };
    let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let url = match &opts.lnd_rest_url {
        Some(u) => {
            notes.push(format!(
                "authenticator.lndhost {host}: mapped to lnd's REST API at {u} (--lnd-rest)"
            ));
            u.clone()
        }
        None => {
            let u = format!("https://{hostname}:8080");
            notes.push(format!(
                "authenticator.lndhost {host}: pay402 uses lnd's REST API, written as {u}; check the port (or give --lnd-rest)"
            ));
            u
        }
    };
    out.push_str("\n[lightning]\nkind = \"lnd\"\n");
    let _ = writeln!(out, "url = {}", q(&url));
    let _ = writeln!(out, "network = {}", q(net));
    match &macdir {
        Some(dir) => {
            let _ = writeln!(
                out,
                "macaroon = {{ file = {} }}",
                q(&format!("{}/invoice.macaroon", dir.trim_end_matches('/')))
            );
        }
        None => notes.push("authenticator.macdir: missing; no macaroon is sent to lnd".into()),
    }
    match &tlspath {
        Some(tls) => {
            let _ = writeln!(out, "tls_cert_file = {}", q(tls));
        }
        None => notes.push(
            "authenticator.tlspath: missing; lnd's certificate must chain to the web PKI".into(),
        ),
    }
    Ok(Lightning {
        enabled: true,
        mpp,
        mpp_realm,
    })
}

/// One service: `Ok(Ok(toml))`, `Ok(Err(why))` when it is refused whole,
/// `Err` when the file is malformed.
fn service(
    s: &mut Obj,
    ln: &Lightning,
    notes: &mut Vec<String>,
) -> Result<Result<String, String>, ApertureError> {
    let name = s.path.trim_start_matches("services.").to_owned();
    let mut out = String::new();
    out.push_str("\n[[services]]\n");
    let _ = writeln!(out, "name = {}", q(&name));
    if let Some(h) = s.str("hostregexp")? {
        let _ = writeln!(out, "host = {}", q(&h));
    }
    if let Some(p) = s.str("pathregexp")? {
        let _ = writeln!(out, "path = {}", q(&p));
    }

    // Everything is read before any refusal, so that no key of a refused
    // service is reported as unknown.
    let address = s.str("address")?;
    let protocol = s.str("protocol")?.unwrap_or_else(|| "http".into());
    let prefix = match s.obj("rewrite")? {
        Some(mut r) => {
            let p = r.str("prefix")?;
            r.rest(notes, "unknown key, ignored");
            p
        }
        None => None,
    };
    let tlscert = s.str("tlscertpath")?;
    let headers = s.str_map("headers")?;
    let capabilities = s.str("capabilities")?;
    let constraints = s.str_map("constraints")?;
    let timeout = s.int("timeout")?;
    let price = s.int("price")?;
    let auth = s
        .str("auth")?
        .unwrap_or_else(|| "on".into())
        .trim()
        .to_ascii_lowercase();
    let scheme = s.str("authscheme")?.unwrap_or_else(|| "l402".into());
    let whitelist = s.str_list("authwhitelistpaths")?;
    let skip = s.str_list("authskipinvoicecreationpaths")?;
    let ratelimits = s.list("ratelimits")?;
    let dynamic = match s.obj("dynamicprice")? {
        Some(mut d) => {
            let enabled = d.bool("enabled")?;
            for k in [
                "grpcaddress",
                "insecure",
                "tlscertpath",
                "metered",
                "usagetailbytes",
            ] {
                d.take(k);
            }
            let note = if enabled {
                "unknown key, ignored"
            } else {
                "unknown key, ignored (Aperture ignores it too, so dynamic prices stay off and the static price applies)"
            };
            d.rest(notes, note);
            if !enabled {
                notes.push(format!("{}.dynamicprice: ignored (not enabled)", s.path));
            }
            enabled
        }
        None => false,
    };
    let key = |k: &str| format!("{}.{k}", s.path);

    // Where requests go.
    let Some(address) = address else {
        return Err(err(&key("address"), "missing"));
    };
    if protocol != "http" && protocol != "https" {
        return Ok(Err(format!(
            "{}: {protocol:?} is not http or https",
            key("protocol")
        )));
    }
    if let Some(p) = &prefix
        && (!p.starts_with('/') || p.contains(['?', '#']))
    {
        return Ok(Err(format!(
            "{}: {p:?} is not an absolute path",
            key("rewrite.prefix")
        )));
    }
    let upstream = format!("{protocol}://{address}{}", prefix.as_deref().unwrap_or(""));
    if reqwest::Url::parse(&upstream).map_or(true, |u| {
        u.host_str().is_none_or(str::is_empty) || u.path() != prefix.as_deref().unwrap_or("/")
    }) {
        return Ok(Err(format!(
            "{}: {address:?} is not a host:port",
            key("address")
        )));
    }
    let _ = writeln!(out, "upstream = {}", q(&upstream));
    if let Some(ca) = &tlscert {
        if protocol == "https" {
            let _ = writeln!(out, "upstream_ca_file = {}", q(ca));
        } else {
            notes.push(format!("{}: ignored (protocol http)", key("tlscertpath")));
        }
    }
    if !headers.is_empty() {
        let mut items = Vec::new();
        for (k, v) in &headers {
            if v.starts_with("!file") {
                return Ok(Err(format!(
                    "{}.{k}: {v:?} sends a file's content hex- or base64-encoded, which pay402 does not: put the encoded value in an environment variable and set add_headers = {{ {k:?} = {{ env = \"...\" }} }}",
                    key("headers")
                )));
            }
            items.push(format!("{} = {}", q(k), q(v)));
        }
        let _ = writeln!(out, "add_headers = {{ {} }}", items.join(", "));
        notes.push(format!(
            "{}: mapped to add_headers as written; move secrets to {{ env = \"...\" }}",
            key("headers")
        ));
    }

    // What the tokens say.
    if let Some(caps) = &capabilities {
        let list: Vec<String> = caps
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(q)
            .collect();
        let _ = writeln!(out, "l402_capabilities = [{}]", list.join(", "));
    }
    if !constraints.is_empty() {
        let list: Vec<String> = constraints
            .iter()
            .map(|(k, v)| q(&format!("{k}={v}")))
            .collect();
        let _ = writeln!(out, "l402_caveats = [{}]", list.join(", "));
    }
    match timeout {
        Some(t) if t > 0 => {
            let _ = writeln!(out, "token_lifetime_secs = {t}");
        }
        Some(_) => notes.push(format!(
            "{}: ignored (not above 0): tokens live pay402's default, one day",
            key("timeout")
        )),
        None => {}
    }

    // Free paths.
    let mut free = Vec::new();
    for re in &whitelist {
        match whitelist_path(re) {
            Some(p) => free.push(q(&p)),
            None => notes.push(format!(
                "{} {re:?}: refused (not a plain path or prefix: the path stays paid)",
                key("authwhitelistpaths")
            )),
        }
    }
    if !free.is_empty() {
        let _ = writeln!(out, "free_paths = [{}]", free.join(", "));
    }
    if !skip.is_empty() {
        notes.push(format!(
            "{}: refused (these paths get a 402 with an invoice like any other; tokens are accepted there as before)",
            key("authskipinvoicecreationpaths")
        ));
    }
    if !ratelimits.is_empty() {
        notes.push(format!(
            "{}: refused ({} rules not enforced: pay402 has no per-path rate limits; the service stays paid)",
            key("ratelimits"),
            ratelimits.len()
        ));
    }

    // Who pays what.
    let freebies = if auth == "off" {
        notes.push(format!("{}: off, mapped to a free service", key("auth")));
        return Ok(Ok(out));
    } else if auth == "on" {
        None
    } else if let Some(n) = auth.strip_prefix("freebie") {
        match n.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Ok(Err(format!("{}: {auth:?} not understood", key("auth")))),
        }
    } else {
        return Ok(Err(format!(
            "{}: {auth:?} is not on, off or freebie N",
            key("auth")
        )));
    };
    if !ln.enabled {
        return Ok(Ok(out));
    }
    if dynamic {
        return Ok(Err(format!(
            "{}: Aperture's gRPC pricer is not supported; convert with `pay402 config from-aperture` and give it a price or an HTTP pricer",
            key("dynamicprice.enabled")
        )));
    }
    let rails = match scheme.as_str() {
        "l402" => "[\"l402\"]",
        "mpp" | "l402+mpp" if !ln.mpp => {
            return Ok(Err(format!(
                "{}: {scheme:?} without authenticator.enablempp",
                key("authscheme")
            )));
        }
        "mpp" => "[\"mpp\"]",
        "l402+mpp" => "[\"l402\", \"mpp\"]",
        other => {
            return Ok(Err(format!(
                "{}: {other:?} is not l402, mpp or l402+mpp",
                key("authscheme")
            )));
        }
    };
    let sats = match price {
        None | Some(0) => {
            notes.push(format!(
                "{}: {}, mapped to Aperture's default of 1 sat",
                key("price"),
                if price.is_none() { "missing" } else { "0" }
            ));
            1
        }
        Some(p) if p < 0 => return Ok(Err(format!("{}: negative", key("price")))),
        Some(p) if p > MAX_PRICE_SATS => {
            return Ok(Err(format!("{}: above Aperture's maximum", key("price"))));
        }
        Some(p) => p,
    };
    let _ = writeln!(out, "rails = {rails}");
    let _ = writeln!(out, "price = {{ sats = {sats} }}");
    if let Some(n) = freebies {
        let _ = writeln!(out, "freebies = {{ requests = {n}, period_secs = 86400 }}");
        notes.push(format!(
            "{}: freebie {n} mapped to {n} per client address per day (Aperture: {n} per address until it restarts)",
            key("auth")
        ));
    }
    Ok(Ok(out))
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
