//! Aperture's top-level sections: the listener's TLS, the store and the
//! authenticator (lnd).

use std::fmt::Write;

use serde_norway::Value;

use super::yaml::Obj;
use super::{ApertureError, Lightning, Options, err, q};

/// `insecure`, `autocert`, `servername`: Aperture serves TLS unless
/// `insecure`, from `<basedir>/tls.cert` and `tls.key`.
pub(crate) fn tls(
    top: &mut Obj,
    out: &mut String,
    notes: &mut Vec<String>,
) -> Result<(), ApertureError> {
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
pub(crate) fn store(
    top: &mut Obj,
    out: &mut String,
    notes: &mut Vec<String>,
) -> Result<(), ApertureError> {
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
pub(crate) fn lightning(
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
