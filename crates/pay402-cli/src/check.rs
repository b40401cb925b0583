//! `pay402 proxy --check`: the resolved configuration, as the proxy will
//! run it (secrets named by their source, never printed).

use std::fmt::Write;

use crate::config::{Config, FacilitatorConfig, HeaderValueSource, LightningConfig, RailName};

/// A human-readable summary of `config`.
///
/// ```
/// let c = pay402_cli::config::Config::parse("p.toml", pay402_cli::init::EXAMPLE).unwrap();
/// assert!(pay402_cli::check::describe(&c).contains("service api"));
/// ```
pub fn describe(config: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: ok", config.file.display());
    let _ = writeln!(s, "listen {}", config.server.listen);
    if let Some(ops) = &config.server.ops_listen {
        let _ = writeln!(s, "operations on {ops}");
    }
    let store = &config.store;
    let _ = write!(s, "store {store}");
    if let Some(p) = &store.password {
        let _ = write!(s, " (password from {p})");
    }
    let pool = store
        .options
        .max_connections
        .map_or("default".to_owned(), |n| n.to_string());
    let _ = writeln!(
        s,
        ", pool {pool}, statement timeout {} ms, acquire timeout {} ms",
        store.options.statement_timeout.as_millis(),
        store.options.acquire_timeout.as_millis()
    );
    if let Some(a) = &config.admin {
        let _ = writeln!(
            s,
            "admin API on {} (bearer token from {})",
            a.listen, a.token
        );
    }
    match &config.lightning {
        None => {}
        Some(LightningConfig::Simnet {}) => {
            let _ = writeln!(s, "lightning: embedded simnet");
        }
        Some(LightningConfig::SimnetRest {
            listen,
            wallet_sats,
        }) => {
            let _ = writeln!(
                s,
                "lightning: embedded simnet, wallet ({wallet_sats} sat) LND REST on {listen}"
            );
        }
        Some(LightningConfig::Lnd {
            url,
            network,
            macaroon,
            ..
        }) => {
            let m = macaroon
                .as_ref()
                .map_or("none".to_owned(), |m| m.to_string());
            let _ = writeln!(s, "lightning: lnd at {url} ({network}), macaroon from {m}");
        }
    }
    if let Some(x) = &config.x402 {
        let f = match &x.facilitator {
            FacilitatorConfig::Local { rpc_url, key, .. } => {
                format!(
                    "local facilitator (rpc from {rpc_url}, key from {key}, allows only {})",
                    x.asset
                )
            }
            FacilitatorConfig::Remote { url, .. } => format!("remote facilitator {url}"),
        };
        let _ = writeln!(
            s,
            "x402: {} on {} to {}, settle {:?}, {f}",
            x.asset_name, x.network, x.pay_to, x.settle
        );
    }
    if let Some(b) = &config.bitrequests {
        bitreq_summary(&mut s, b);
    }
    if let Some(m) = &config.mpp {
        let methods: Vec<&str> = m
            .methods
            .iter()
            .map(|x| match x {
                crate::config::MppMethod::Lightning => "lightning/charge",
                crate::config::MppMethod::Evm => "evm/charge",
            })
            .collect();
        let _ = write!(
            s,
            "mpp: realm {:?}, {}, challenges valid {} s, secret from {}",
            m.realm,
            methods.join(" + "),
            m.challenge_ttl_secs,
            m.secret
        );
        if let Some(p) = &m.previous_secret {
            let _ = write!(s, ", previous secret from {p}");
        }
        let _ = writeln!(s);
    }
    for svc in &config.services {
        let _ = writeln!(s, "service {}", svc.name);
        let _ = writeln!(
            s,
            "  host ~ {:?}  path ~ {:?}",
            svc.host.as_str(),
            svc.path.as_str()
        );
        let _ = writeln!(
            s,
            "  upstream {} ({}, timeout {} s)",
            svc.upstream,
            if svc.upstream_http2 {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            svc.timeout.as_secs()
        );
        let bitreq_methods = || {
            config.bitrequests.as_ref().map_or(String::new(), |b| {
                [
                    b.transfer_username.as_ref().map(|_| "transfer"),
                    b.onchain.as_ref().map(|_| "onchain"),
                    b.channel.as_ref().map(|_| "channel"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            })
        };
        if let Some(p) = &svc.pricer {
            let rails: Vec<String> = svc.rails.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "  {} priced by {} (timeout {} ms, cached {} s)",
                rails.join(", "),
                p.url,
                p.timeout_ms,
                p.cache_secs
            );
            if svc.rails.contains(&RailName::Bitreq) {
                let _ = writeln!(s, "  bitreq at the pricer's sats ({})", bitreq_methods());
            }
        }
        let mpp = (svc.mpp_price, &svc.mpp_evm_price);
        match (&svc.l402_price, &svc.x402_price, &svc.bitreq_price, mpp) {
            (None, None, None, (None, None)) if svc.pricer.is_some() => {}
            (None, None, None, (None, None)) => {
                let _ = writeln!(s, "  free");
            }
            (l, x, b, (mpp_sat, mpp_evm)) => {
                if let Some(m) = l {
                    let _ = writeln!(
                        s,
                        "  l402 {m} (tokens valid {} s)",
                        svc.token_lifetime.as_secs()
                    );
                }
                if let Some(a) = x {
                    let _ = writeln!(s, "  x402 {a} base units");
                }
                if let Some(sat) = b {
                    let _ = writeln!(s, "  bitreq {} sat ({})", sat.0, bitreq_methods());
                }
                if let Some(sat) = mpp_sat {
                    let _ = writeln!(s, "  mpp lightning/charge {} sat", sat.0);
                }
                if let Some(a) = mpp_evm {
                    let _ = writeln!(s, "  mpp evm/charge {a} base units");
                }
            }
        }
        if !svc.free_paths.is_empty() {
            let _ = writeln!(s, "  free paths {}", svc.free_paths.join(", "));
        }
        for (name, value) in &svc.add_headers {
            let v = match value {
                HeaderValueSource::Literal(v) => format!("{v:?}"),
                HeaderValueSource::Secret(sec) => format!("<secret from {sec}>"),
            };
            let _ = writeln!(s, "  add header {name}: {v}");
        }
        for name in &svc.strip_headers {
            let _ = writeln!(s, "  strip header {name}");
        }
        if let Some(h) = &svc.identity_header {
            let _ = writeln!(s, "  identity header {h}");
        }
    }
    s
}

/// The `[bitrequests]` lines: each method on, its chain and policy, where
/// the channel key comes from (never the key).
fn bitreq_summary(s: &mut String, b: &crate::config::BitreqSettings) {
    match &b.transfer_username {
        Some(u) => {
            let _ = writeln!(
                s,
                "bitrequests: ledger on {}, bit-transfers to {u:?} (accounts through the admin API)",
                b.network
            );
        }
        None => {
            let _ = writeln!(s, "bitrequests: on {}, no ledger", b.network);
        }
    }
    if let Some(c) = &b.chain {
        let c = c.get_ref();
        let auth = match (&c.user, &c.password) {
            (Some(u), Some(p)) => format!(", user {u:?}, password from {p}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  chain: {} at {}{auth}, timeout {}s, sync every {}s",
            match c.kind {
                crate::config::BitreqChainKind::Bitcoind => "bitcoind",
                crate::config::BitreqChainKind::Esplora => "esplora",
            },
            c.url,
            c.timeout_secs.unwrap_or(30),
            b.sync_secs.unwrap_or(60)
        );
    }
    if let Some(o) = &b.onchain {
        let o = o.get_ref();
        let to = match (&o.xpub, &o.address) {
            (Some(x), _) => format!("a fresh address per 402 from {x}"),
            (None, Some(a)) => format!("the fixed address {a}"),
            (None, None) => String::new(),
        };
        let zero = o
            .accept_unconfirmed_up_to_sats
            .map_or("never unconfirmed".to_owned(), |c| {
                format!("unconfirmed up to {c} sat")
            });
        let _ = writeln!(
            s,
            "  onchain: to {to}, {} confirmation(s), {zero}, quotes {}s (at most {}), txids replay-checked in the store",
            o.confirmations.unwrap_or(1),
            o.quote_ttl_secs.unwrap_or(3600),
            o.max_open_quotes.unwrap_or(10_000)
        );
    }
    if let Some(c) = &b.channel {
        let c = c.get_ref();
        let _ = writeln!(
            s,
            "  channel: endpoints at {}{}, key from {}, zeroconf {}, payment fee {} sat",
            b.public_url.as_deref().unwrap_or(""),
            c.path.as_deref().unwrap_or("/payment"),
            c.key,
            c.zeroconf.unwrap_or(false),
            c.fee_sats.unwrap_or(125_000)
        );
    }
}
