//! One Aperture service to one `[[services]]`, or its refusal.

use std::fmt::Write;

use super::yaml::Obj;
use super::{ApertureError, Lightning, MAX_PRICE_SATS, err, q};

/// One service: `Ok(Ok(toml))`, `Ok(Err(why))` when it is refused whole,
/// `Err` when the file is malformed.
pub(crate) fn service(
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
