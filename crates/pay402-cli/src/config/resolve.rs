//! Checking and resolving the file as written: regexes compiled, prices
//! converted exactly, every error placed in the file.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use pay402_core::money::{Msat, Sat};
use pay402_core::rates::{Amount, FixedRates, Rates, Rounding, TokenUnit, Unit};
use pay402_core::x402::TokenAmount;
use regex::Regex;
use toml::Spanned;

use super::*;

pub(super) struct Resolver<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Resolver<'_> {
    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let span = if span.is_empty() && span.start == 0 {
            None
        } else {
            Some(span)
        };
        ConfigError::new(self.file, self.text, span, key, msg)
    }

    pub(super) fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw.store)?;
        if let Some(l) = &raw.lightning {
            self.lightning(l)?;
        }
        if let Some(x) = &raw.x402 {
            self.x402(x)?;
        }
        if let Some(b) = &raw.bitrequests {
            self.bitrequests(b)?;
        }
        if let Some(m) = &raw.mpp {
            self.mpp(m, &raw)?;
        }
        if let Some(a) = &raw.admin {
            a.get_ref()
                .listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    self.err(
                        a.span(),
                        "admin.listen",
                        format!("{:?}: {e}", a.get_ref().listen),
                    )
                })?;
            self.secret(a.span(), "admin.token", &a.get_ref().token)?;
        }
        if raw.services.is_empty() {
            return Err(self.err(0..0, "services", "no [[services]]: nothing to proxy"));
        }
        let rates = raw.rates.usd_cents_per_btc.map(|c| {
            let mut r = FixedRates::new().usd_cents_per_btc(c);
            if let Some(x) = &raw.x402 {
                let x = x.get_ref();
                r = r.usd_stablecoin(TokenUnit::new(&x.network, &x.asset, x.asset_decimals));
            }
            r
        });
        let mut services = Vec::with_capacity(raw.services.len());
        let mut names = std::collections::HashSet::new();
        for (i, s) in raw.services.iter().enumerate() {
            let service = self.service(i, s, &raw, rates.as_ref())?;
            if !names.insert(service.name.clone()) {
                return Err(self.err(
                    s.span(),
                    format!("services[{i}].name"),
                    format!("{:?} is used by an earlier service", service.name),
                ));
            }
            services.push(service);
        }
        Ok(Config {
            file: self.file.to_owned(),
            server: raw.server,
            store,
            lightning: raw.lightning.map(Spanned::into_inner),
            x402: raw.x402.map(Spanned::into_inner),
            admin: raw.admin.map(Spanned::into_inner),
            bitrequests: raw.bitrequests.map(Spanned::into_inner),
            mpp: raw.mpp.map(Spanned::into_inner),
            services,
        })
    }

    fn store(&self, s: &StoreConfig) -> Result<StoreUrl, ConfigError> {
        use pay402_server::database::{DatabaseOptions, StoreUrl as U};
        let span = s.url.span();
        let url: U = s
            .url
            .get_ref()
            .parse()
            .map_err(|e: pay402_server::store::StoreError| {
                self.err(span.clone(), "store.url", e.to_string())
            })?;
        if let U::Postgres(text) = &url {
            // Secrets come from files or the environment, never inline.
            let parsed = reqwest::Url::parse(text)
                .map_err(|e| self.err(span.clone(), "store.url", format!("not a URL: {e}")))?;
            let query_password = parsed
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"));
            if parsed.password().is_some() || query_password {
                return Err(self.err(
                    span,
                    "store.url",
                    "no password in the URL: give store.password = { file = \"PATH\" } or { env = \"VAR\" }",
                ));
            }
        } else if s.password.is_some() {
            return Err(self.err(
                span,
                "store.password",
                "a password is only for a postgres:// store",
            ));
        }
        if let Some(p) = &s.password {
            self.secret(span.clone(), "store.password", p)?;
        }
        let mut options = DatabaseOptions::default();
        if let Some(n) = s.max_connections {
            if n == 0 || n > 1000 {
                return Err(self.err(span, "store.max_connections", "must be 1 to 1000"));
            }
            options = options.max_connections(n);
        }
        for (key, value) in [
            ("store.statement_timeout_ms", s.statement_timeout_ms),
            ("store.acquire_timeout_ms", s.acquire_timeout_ms),
        ] {
            if value.is_some_and(|ms| ms == 0 || ms > 3_600_000) {
                return Err(self.err(span.clone(), key, "must be 1 to 3600000 (one hour)"));
            }
        }
        if let Some(ms) = s.statement_timeout_ms {
            options = options.statement_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = s.acquire_timeout_ms {
            options = options.acquire_timeout(Duration::from_millis(ms));
        }
        Ok(StoreUrl {
            url,
            password: s.password.clone(),
            options,
        })
    }

    fn lightning(&self, l: &Spanned<LightningConfig>) -> Result<(), ConfigError> {
        match l.get_ref() {
            LightningConfig::Simnet {} => Ok(()),
            LightningConfig::SimnetRest { listen, .. } => listen
                .parse::<std::net::SocketAddr>()
                .map(|_| ())
                .map_err(|e| self.err(l.span(), "lightning.listen", format!("{listen:?}: {e}"))),
            LightningConfig::Lnd {
                url,
                network,
                macaroon,
                ..
            } => {
                reqwest::Url::parse(url)
                    .map_err(|e| self.err(l.span(), "lightning.url", format!("{url:?}: {e}")))?;
                parse_ln_network(network).ok_or_else(|| {
                    self.err(
                        l.span(),
                        "lightning.network",
                        format!("{network:?} is not bitcoin, testnet, testnet4, signet or regtest"),
                    )
                })?;
                if let Some(m) = macaroon {
                    self.secret(l.span(), "lightning.macaroon", m)?;
                }
                Ok(())
            }
        }
    }

    fn bitrequests(&self, b: &Spanned<BitreqSettings>) -> Result<(), ConfigError> {
        let s = b.get_ref();
        let Some(network) = parse_btc_network(&s.network) else {
            return Err(self.err(
                b.span(),
                "bitrequests.network",
                format!("{:?} is not bitcoin, testnet, signet or regtest", s.network),
            ));
        };
        if let Some(u) = &s.transfer_username
            && (u.is_empty() || u.len() > 128 || !u.bytes().all(|c| c.is_ascii_graphic()))
        {
            return Err(self.err(
                b.span(),
                "bitrequests.transfer_username",
                "1 to 128 visible ASCII characters",
            ));
        }
        if s.transfer_username.is_none() && s.onchain.is_none() && s.channel.is_none() {
            return Err(self.err(
                b.span(),
                "bitrequests",
                "no method: set transfer_username, [bitrequests.onchain] or [bitrequests.channel]",
            ));
        }
        if let Some(url) = &s.public_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() < 1024
                && url.parse::<reqwest::Url>().is_ok()
                && url.bytes().all(|c| (0x21..0x7f).contains(&c));
            if !ok {
                return Err(self.err(
                    b.span(),
                    "bitrequests.public_url",
                    format!("{url:?} is not an http(s) origin"),
                ));
            }
        }
        if s.sync_secs == Some(0) {
            return Err(self.err(b.span(), "bitrequests.sync_secs", "must be above zero"));
        }
        match (&s.chain, s.onchain.is_some() || s.channel.is_some()) {
            (None, true) => {
                return Err(self.err(
                    b.span(),
                    "bitrequests.chain",
                    "on-chain payments and channels need a [bitrequests.chain] backend",
                ));
            }
            (Some(c), _) => self.bitreq_chain(c)?,
            (None, false) => {}
        }
        if let Some(o) = &s.onchain {
            self.bitreq_onchain(o, network)?;
        }
        if let Some(c) = &s.channel {
            let span = c.span();
            let ch = c.get_ref();
            self.secret(span.clone(), "bitrequests.channel.key", &ch.key)?;
            if let Some(p) = &ch.path
                && (p.len() < 2
                    || p.len() > 256
                    || !p.starts_with('/')
                    || p.ends_with('/')
                    || pay402_server::normalize_path(p).is_none()
                    || !p
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"/-_.~".contains(&c)))
            {
                return Err(self.err(
                    span,
                    "bitrequests.channel.path",
                    format!("{p:?} is not a path like \"/payment\""),
                ));
            }
            if ch.min_duration_secs == Some(0) {
                return Err(self.err(
                    span,
                    "bitrequests.channel.min_duration_secs",
                    "must be above zero",
                ));
            }
            if ch.fee_sats.is_some_and(|f| f > 21_000_000 * 100_000_000) {
                return Err(self.err(span, "bitrequests.channel.fee_sats", "too large"));
            }
        }
        Ok(())
    }

    fn bitreq_chain(&self, c: &Spanned<BitreqChain>) -> Result<(), ConfigError> {
        let span = c.span();
        let ch = c.get_ref();
        let url = ch.url.parse::<reqwest::Url>().ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.username().is_empty()
                && u.password().is_none()
        });
        if url.is_none() {
            return Err(self.err(
                span,
                "bitrequests.chain.url",
                format!(
                    "{:?} is not an http(s) URL without credentials (give user and password)",
                    ch.url
                ),
            ));
        }
        if ch.timeout_secs == Some(0) {
            return Err(self.err(span, "bitrequests.chain.timeout_secs", "must be above zero"));
        }
        match ch.kind {
            BitreqChainKind::Bitcoind => {
                if ch.user.as_deref().is_none_or(str::is_empty) {
                    return Err(self.err(
                        span,
                        "bitrequests.chain.user",
                        "bitcoind needs the RPC user",
                    ));
                }
                match &ch.password {
                    Some(p) => self.secret(span, "bitrequests.chain.password", p)?,
                    None => {
                        return Err(self.err(
                            span,
                            "bitrequests.chain.password",
                            "bitcoind needs the RPC password ({ file = \"PATH\" } or { env = \"VAR\" })",
                        ));
                    }
                }
            }
            BitreqChainKind::Esplora => {
                if ch.user.is_some() || ch.password.is_some() {
                    return Err(self.err(
                        span,
                        "bitrequests.chain.user",
                        "esplora takes no user or password",
                    ));
                }
            }
        }
        Ok(())
    }

    fn bitreq_onchain(
        &self,
        o: &Spanned<BitreqOnChain>,
        network: pay402_server::bitreq::bitcoin::Network,
    ) -> Result<(), ConfigError> {
        use pay402_server::bitreq::bitcoin::address::NetworkUnchecked;
        use pay402_server::bitreq::bitcoin::{Address, NetworkKind, bip32::Xpub};
        let span = o.span();
        let oc = o.get_ref();
        match (&oc.xpub, &oc.address) {
            (Some(x), None) => {
                let ok = x
                    .parse::<Xpub>()
                    .is_ok_and(|x| x.network == NetworkKind::from(network));
                if !ok {
                    return Err(self.err(
                        span,
                        "bitrequests.onchain.xpub",
                        format!("not an extended public key of {network}"),
                    ));
                }
            }
            (None, Some(a)) => {
                let ok = a
                    .parse::<Address<NetworkUnchecked>>()
                    .is_ok_and(|a| a.require_network(network).is_ok());
                if !ok {
                    return Err(self.err(
                        span,
                        "bitrequests.onchain.address",
                        format!("{a:?} is not an address of {network}"),
                    ));
                }
            }
            _ => {
                return Err(self.err(
                    span,
                    "bitrequests.onchain",
                    "give exactly one of xpub (a fresh address per 402) or address (one fixed address)",
                ));
            }
        }
        if oc.confirmations == Some(0) {
            return Err(self.err(
                span,
                "bitrequests.onchain.confirmations",
                "at least 1 (accept_unconfirmed_up_to_sats serves cheap requests unconfirmed)",
            ));
        }
        if oc.quote_ttl_secs == Some(0) {
            return Err(self.err(
                span,
                "bitrequests.onchain.quote_ttl_secs",
                "must be above zero",
            ));
        }
        if oc.max_open_quotes == Some(0) {
            return Err(self.err(
                span,
                "bitrequests.onchain.max_open_quotes",
                "must be above zero",
            ));
        }
        Ok(())
    }

    fn mpp(&self, m: &Spanned<MppSettings>, raw: &RawConfig) -> Result<(), ConfigError> {
        let span = m.span();
        let s = m.get_ref();
        // The realm's rules are the library's (no secret is read here).
        pay402_server::mpp::MppConfig::new(s.realm.as_str(), &[0; 32])
            .map_err(|e| self.err(span.clone(), "mpp.realm", e.to_string()))?;
        self.secret(span.clone(), "mpp.secret", &s.secret)?;
        if let Some(p) = &s.previous_secret {
            self.secret(span.clone(), "mpp.previous_secret", p)?;
        }
        if s.methods.is_empty() {
            return Err(self.err(
                span,
                "mpp.methods",
                "name at least one of \"lightning\", \"evm\"",
            ));
        }
        if s.methods.contains(&MppMethod::Lightning) && raw.lightning.is_none() {
            return Err(self.err(
                span,
                "mpp.methods",
                "lightning needs a [lightning] section (its node issues the invoices)",
            ));
        }
        if s.methods.contains(&MppMethod::Evm) && raw.x402.is_none() {
            return Err(self.err(
                span,
                "mpp.methods",
                "evm needs an [x402] section (its asset, pay_to and facilitator)",
            ));
        }
        if s.challenge_ttl_secs == 0 || s.challenge_ttl_secs > 86_400 {
            return Err(self.err(span, "mpp.challenge_ttl_secs", "must be 1 to 86400"));
        }
        Ok(())
    }

    /// A token price (`price.x402_units`, or `price.usd_cents` converted at
    /// one US dollar per whole token), above zero.
    fn token_price(
        &self,
        span: &Range<usize>,
        key: &dyn Fn(&str) -> String,
        rail: &str,
        p: &PriceConfig,
        x: &X402Settings,
    ) -> Result<TokenAmount, ConfigError> {
        let amount = match (&p.x402_units, p.usd_cents) {
            (Some(u), None) => TokenAmount::parse(u)
                .map_err(|e| self.err(span.clone(), key("price.x402_units"), e.to_string()))?,
            (None, Some(cents)) => {
                let token = TokenUnit::new(&x.network, &x.asset, x.asset_decimals);
                let r = FixedRates::new().usd_stablecoin(token.clone());
                match r.convert(&Amount::UsdCents(cents), &Unit::Token(token), Rounding::Up) {
                    Ok(a) => TokenAmount(a.value()),
                    Err(e) => {
                        return Err(self.err(span.clone(), key("price.usd_cents"), e.to_string()));
                    }
                }
            }
            _ => {
                return Err(self.err(
                    span.clone(),
                    key("price"),
                    format!("{rail} needs exactly one of price.x402_units or price.usd_cents"),
                ));
            }
        };
        if amount.0.is_zero() {
            return Err(self.err(
                span.clone(),
                key("price"),
                format!("the {rail} price must be above zero"),
            ));
        }
        Ok(amount)
    }

    fn secret(&self, span: Range<usize>, key: &str, s: &SecretSource) -> Result<(), ConfigError> {
        match (&s.file, &s.env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(self.err(
                span,
                key,
                "give exactly one of file = \"PATH\" or env = \"VAR\"",
            )),
        }
    }

    fn x402(&self, x: &Spanned<X402Settings>) -> Result<(), ConfigError> {
        let span = x.span();
        let s = x.get_ref();
        if pay402_core::x402::network::Caip2::parse(&s.network).is_err() {
            return Err(self.err(
                span,
                "x402.network",
                format!(
                    "{:?} is not a CAIP-2 network id (eip155:<chain id>)",
                    s.network
                ),
            ));
        }
        for (key, v) in [("x402.asset", &s.asset), ("x402.pay_to", &s.pay_to)] {
            v.parse::<pay402_core::x402::evm::EvmAddress>()
                .map_err(|_| self.err(span.clone(), key, format!("{v:?} is not a 0x address")))?;
        }
        match &s.facilitator {
            FacilitatorConfig::Local { rpc_url, key, .. } => {
                self.secret(span.clone(), "x402.facilitator.rpc_url", rpc_url)?;
                self.secret(span, "x402.facilitator.key", key)
            }
            FacilitatorConfig::Remote { url, api_key, .. } => {
                if let Some(k) = api_key {
                    self.secret(span.clone(), "x402.facilitator.api_key", k)?;
                }
                reqwest::Url::parse(url)
                    .map(|_| ())
                    .map_err(|e| self.err(span, "x402.facilitator.url", format!("{url:?}: {e}")))
            }
        }
    }

    fn pricer(
        &self,
        span: Range<usize>,
        key: &str,
        pr: &PricerConfig,
        rails: &[RailName],
        raw: &RawConfig,
        price: &PriceConfig,
    ) -> Result<(), ConfigError> {
        if price.sats.is_some() || price.x402_units.is_some() || price.usd_cents.is_some() {
            return Err(self.err(span, key, "give a price or a pricer, not both"));
        }
        if rails.is_empty() {
            return Err(self.err(span, key, "a pricer on a service without rails"));
        }
        if rails.contains(&RailName::L402) && raw.lightning.is_none() {
            return Err(self.err(span, key, "l402 needs a [lightning] section"));
        }
        if rails.contains(&RailName::X402) && raw.x402.is_none() {
            return Err(self.err(span, key, "x402 needs an [x402] section"));
        }
        if rails.contains(&RailName::Mpp) && raw.mpp.is_none() {
            return Err(self.err(span, key, "mpp needs an [mpp] section"));
        }
        if rails.contains(&RailName::Bitreq) && raw.bitrequests.is_none() {
            return Err(self.err(span, key, "bitreq needs a [bitrequests] section"));
        }
        let url = reqwest::Url::parse(&pr.url)
            .map_err(|e| self.err(span.clone(), key, format!("url: {e}")))?;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(self.err(span, key, "url must be https:// (http:// only on loopback)"));
        }
        if pr.timeout_ms == 0 || pr.timeout_ms > 30_000 {
            return Err(self.err(span, key, "timeout_ms must be 1 to 30000"));
        }
        Ok(())
    }

    /// A Bitcoin rail's price (`price.sats`, or `price.usd_cents` with
    /// `[rates]`) in `unit`, converted exactly and rounded up; `None` when
    /// it does not fit.
    fn sat_price(
        &self,
        span: &Range<usize>,
        key: &dyn Fn(&str) -> String,
        rail: &str,
        p: &PriceConfig,
        rates: Option<&FixedRates>,
        unit: Unit,
    ) -> Result<Option<Amount>, ConfigError> {
        let (from, rates) = match (p.sats, p.usd_cents, rates) {
            (Some(s), None, r) => (Amount::Sat(Sat(s)), r.cloned().unwrap_or_default()),
            (None, Some(cents), Some(r)) => (Amount::UsdCents(cents), r.clone()),
            (None, Some(_), None) => {
                return Err(self.err(
                    span.clone(),
                    key("price.usd_cents"),
                    format!("needs [rates] usd_cents_per_btc for {rail}"),
                ));
            }
            _ => {
                return Err(self.err(
                    span.clone(),
                    key("price"),
                    format!("{rail} needs exactly one of price.sats or price.usd_cents"),
                ));
            }
        };
        Ok(rates.convert(&from, &unit, Rounding::Up).ok())
    }

    fn service(
        &self,
        i: usize,
        s: &Spanned<ServiceConfig>,
        raw: &RawConfig,
        rates: Option<&FixedRates>,
    ) -> Result<Service, ConfigError> {
        let span = s.span();
        let key = |k: &str| format!("services[{i}].{k}");
        let c = s.get_ref();
        let regex = |field: &Option<Spanned<String>>, k: &str| -> Result<Regex, ConfigError> {
            match field {
                None => Regex::new("").map_err(|e| self.err(span.clone(), key(k), e.to_string())),
                Some(r) => regex::RegexBuilder::new(r.get_ref())
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| self.err(r.span(), key(k), format!("not a regex: {e}"))),
            }
        };
        let host = regex(&c.host, "host")?;
        let path = regex(&c.path, "path")?;
        let upstream = reqwest::Url::parse(c.upstream.get_ref()).map_err(|e| {
            self.err(
                c.upstream.span(),
                key("upstream"),
                format!("not a URL: {e}"),
            )
        })?;
        if !matches!(upstream.scheme(), "http" | "https") || upstream.host().is_none() {
            return Err(self.err(
                c.upstream.span(),
                key("upstream"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if upstream.query().is_some() || upstream.fragment().is_some() {
            return Err(self.err(
                c.upstream.span(),
                key("upstream"),
                "no query or fragment allowed",
            ));
        }
        let identity = match (&c.upstream_client_cert_file, &c.upstream_client_key_file) {
            (Some(a), Some(b)) => Some((a.clone(), b.clone())),
            (None, None) => None,
            _ => {
                return Err(self.err(
                    span,
                    key("upstream_client_cert_file"),
                    "give both upstream_client_cert_file and upstream_client_key_file",
                ));
            }
        };
        if c.timeout_secs == 0 {
            return Err(self.err(span, key("timeout_secs"), "must be at least 1"));
        }
        let mut add_headers = Vec::new();
        for (name, value) in &c.add_headers {
            let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.err(
                    span.clone(),
                    key(&format!("add_headers.{name}")),
                    "not a header name",
                )
            })?;
            match value {
                HeaderValueSource::Literal(v) => {
                    http::HeaderValue::from_str(v).map_err(|_| {
                        self.err(
                            span.clone(),
                            key(&format!("add_headers.{name}")),
                            "not a header value",
                        )
                    })?;
                }
                HeaderValueSource::Secret(sec) => {
                    self.secret(span.clone(), &key(&format!("add_headers.{name}")), sec)?
                }
            }
            add_headers.push((n, value.clone()));
        }
        let mut strip_headers = Vec::new();
        for name in &c.strip_headers {
            strip_headers.push(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.err(
                    span.clone(),
                    key("strip_headers"),
                    format!("{name:?} is not a header name"),
                )
            })?);
        }
        for p in &c.free_paths {
            if !p.starts_with('/')
                || pay402_server::normalize_path(p.trim_end_matches('*')).is_none()
            {
                return Err(self.err(
                    span.clone(),
                    key("free_paths"),
                    format!("{p:?}: a free path is /exact or /prefix/* without . or .. segments"),
                ));
            }
        }
        for (k, list) in [
            ("l402_capabilities", &c.l402_capabilities),
            ("l402_caveats", &c.l402_caveats),
        ] {
            for v in list {
                let ok = if k == "l402_caveats" {
                    v.split_once('=').is_some_and(|(a, _)| !a.trim().is_empty())
                } else {
                    !v.is_empty() && !v.contains([',', '=', ' '])
                };
                if !ok || v.len() > 256 {
                    return Err(self.err(
                        span.clone(),
                        key(k),
                        format!("{v:?}: a capability is a word without , = or spaces; a caveat is key=value"),
                    ));
                }
            }
        }
        let identity_header = c
            .identity_header
            .as_ref()
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
            .transpose()
            .map_err(|_| self.err(span.clone(), key("identity_header"), "not a header name"))?;

        // Prices: per rail, or one in US cents converted exactly (rounded up).
        let p = &c.price;
        let mut l402_price = None;
        let mut x402_price = None;
        let mut bitreq_price = None;
        let mut mpp_price = None;
        let mut mpp_evm_price = None;
        let mut rails = c.rails.clone();
        rails.sort();
        rails.dedup();
        if let Some(pr) = &c.pricer {
            self.pricer(span.clone(), &key("pricer"), pr, &rails, raw, p)?;
        }
        for rail in rails.iter().filter(|_| c.pricer.is_none()) {
            match rail {
                RailName::L402 => {
                    if raw.lightning.is_none() {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "l402 needs a [lightning] section",
                        ));
                    }
                    let msat = match self.sat_price(&span, &key, "l402", p, rates, Unit::Msat)? {
                        Some(Amount::Msat(m)) => Some(m),
                        _ => None,
                    };
                    match msat {
                        Some(m) if m > Msat::ZERO => l402_price = Some(m),
                        _ => {
                            return Err(self.err(
                                span.clone(),
                                key("price"),
                                "the l402 price must be above zero",
                            ));
                        }
                    }
                }
                RailName::X402 => {
                    let Some(x) = &raw.x402 else {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "x402 needs an [x402] section",
                        ));
                    };
                    x402_price = Some(self.token_price(&span, &key, "x402", p, x.get_ref())?);
                }
                RailName::Bitreq => {
                    if raw.bitrequests.is_none() {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "bitreq needs a [bitrequests] section",
                        ));
                    }
                    let sat = match self.sat_price(&span, &key, "bitreq", p, rates, Unit::Sat)? {
                        Some(Amount::Sat(s)) => Some(s),
                        _ => None,
                    };
                    match sat {
                        Some(s) if s.0 > 0 => bitreq_price = Some(s),
                        _ => {
                            return Err(self.err(
                                span.clone(),
                                key("price"),
                                "the bitreq price must be above zero",
                            ));
                        }
                    }
                }
                RailName::Mpp => {
                    let Some(m) = &raw.mpp else {
                        return Err(self.err(
                            span.clone(),
                            key("rails"),
                            "mpp needs an [mpp] section",
                        ));
                    };
                    let methods = &m.get_ref().methods;
                    if methods.contains(&MppMethod::Lightning) {
                        // The method's `amount` is whole sat: rounded up.
                        let sat = match self.sat_price(&span, &key, "mpp", p, rates, Unit::Sat)? {
                            Some(Amount::Sat(s)) => Some(s),
                            _ => None,
                        };
                        match sat {
                            Some(s) if s.0 > 0 => mpp_price = Some(s),
                            _ => {
                                return Err(self.err(
                                    span.clone(),
                                    key("price"),
                                    "the mpp price must be above zero",
                                ));
                            }
                        }
                    }
                    if methods.contains(&MppMethod::Evm) {
                        // [mpp] with evm was checked to have an [x402].
                        let Some(x) = &raw.x402 else {
                            return Err(self.err(
                                span.clone(),
                                key("rails"),
                                "mpp's evm method needs an [x402] section",
                            ));
                        };
                        mpp_evm_price =
                            Some(self.token_price(&span, &key, "mpp", p, x.get_ref())?);
                    }
                }
            }
        }
        if let Some(f) = c.freebies {
            if f.requests == 0 || f.period_secs == 0 {
                return Err(self.err(
                    span,
                    key("freebies"),
                    "requests and period_secs must be at least 1",
                ));
            }
            if rails.is_empty() {
                return Err(self.err(span, key("freebies"), "freebies on a service without rails"));
            }
        }
        if rails.is_empty() && (p.sats.is_some() || p.x402_units.is_some() || p.usd_cents.is_some())
        {
            return Err(self.err(span, key("rails"), "a price is set but no rails are on"));
        }
        Ok(Service {
            name: c.name.clone(),
            host,
            path,
            upstream,
            upstream_ca_file: c.upstream_ca_file.clone(),
            upstream_client_identity: identity,
            upstream_http2: c.upstream_http2,
            timeout: Duration::from_secs(c.timeout_secs),
            add_headers,
            strip_headers,
            free_paths: c.free_paths.clone(),
            l402_price,
            x402_price,
            bitreq_price,
            mpp_price,
            mpp_evm_price,
            mpp_methods: match (&raw.mpp, rails.contains(&RailName::Mpp)) {
                (Some(m), true) => m.get_ref().methods.clone(),
                _ => Vec::new(),
            },
            token_lifetime: Duration::from_secs(c.token_lifetime_secs.max(1)),
            l402_capabilities: c.l402_capabilities.clone(),
            l402_caveats: c.l402_caveats.clone(),
            freebies: c.freebies,
            rails,
            pricer: c.pricer.clone(),
            identity_header,
        })
    }
}

/// A Bitcoin network name (BitRequests).
///
/// ```
/// assert!(pay402_cli::config::parse_btc_network("signet").is_some());
/// assert!(pay402_cli::config::parse_btc_network("simnet").is_none());
/// ```
pub fn parse_btc_network(s: &str) -> Option<pay402_server::bitreq::bitcoin::Network> {
    use pay402_server::bitreq::bitcoin::Network;
    Some(match s {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        _ => return None,
    })
}

/// A Lightning network name.
///
/// ```
/// assert!(pay402_cli::config::parse_ln_network("regtest").is_some());
/// ```
pub fn parse_ln_network(s: &str) -> Option<pay402_core::lightning::Network> {
    use pay402_core::lightning::Network;
    Some(match s {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "testnet4" => Network::Testnet4,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        _ => return None,
    })
}
