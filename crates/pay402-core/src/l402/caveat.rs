//! Caveats: parsing, the satisfier engine, and the built-in conditions.
//!
//! Caveats are `condition=value` strings split on the first `=`. Verification
//! follows Aperture: caveats are grouped by condition; within a group every
//! caveat must only narrow the one before it (`satisfy_previous`), and the last
//! one must hold for this request (`satisfy_final`). Conditions no satisfier
//! knows are skipped, as Aperture does, unless strict mode is on.
//!
//! Built-in conditions:
//! - `services=name:tier[,name:tier…]` — the token is valid for these services;
//! - `<service>_capabilities=a,b` — the capabilities granted for a service;
//! - `<service>_valid_until=<unix seconds>` — the token expires at that time;
//! - `request=<METHOD> <path?query> <sha256(body) hex>` — pay402's request
//!   binding: the token is good only for the exact request that was quoted;
//! - `<service>_scope=<scope>` — pay402's route binding: the token is good
//!   only where the server's scope (a route) is exactly this one;
//! - `<service>_paid_msat=<msat>` — pay402's price binding: what was paid; the
//!   token is good only where the request's price is at most this.
//!
//! A verifier that sets [`VerifyContext::grant`] also requires the last two
//! to be present (a token without them grants nothing there).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::money::Msat;
use crate::time::UnixTime;

/// Longest caveat accepted when attenuating or minting, in bytes.
pub const MAX_CAVEAT_LEN: usize = 4096;

/// One caveat, `condition=value`, borrowed from the macaroon.
///
/// ```
/// use pay402_core::l402::Caveat;
/// let c = Caveat::parse(b"services=api:0").unwrap();
/// assert_eq!((c.condition, c.value), ("services", "api:0"));
/// assert_eq!(Caveat::parse(b"no-equals-sign"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caveat<'a> {
    /// The condition (left of the first `=`).
    pub condition: &'a str,
    /// The value (right of the first `=`; may be empty).
    pub value: &'a str,
}

impl<'a> Caveat<'a> {
    /// Parses caveat bytes; `None` if not UTF-8, no `=`, or an empty condition.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::Caveat::parse(b"=x"), None);
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Option<Caveat<'a>> {
        // A byte scan beats a char searcher on strings this short.
        let eq = bytes.iter().position(|&b| b == b'=')?;
        if eq == 0 {
            return None;
        }
        let s = std::str::from_utf8(bytes).ok()?;
        let (condition, value) = s.split_at(eq);
        Some(Caveat {
            condition,
            value: &value[1..],
        })
    }
}

/// Facts about the HTTP request being authorized, for satisfiers that look at it.
///
/// ```
/// use pay402_core::l402::RequestFacts;
/// let headers = http::HeaderMap::new();
/// let r = RequestFacts::new(&http::Method::POST, "/sms", &headers).with_body(b"{}");
/// assert!(r.body_sha256.is_some());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'r> {
    /// The request method.
    pub method: &'r http::Method,
    /// The path and query, as sent (`/a/b?x=1`).
    pub path_and_query: &'r str,
    /// The request headers.
    pub headers: &'r http::HeaderMap,
    /// SHA-256 of the request body, when the server buffered it.
    pub body_sha256: Option<[u8; 32]>,
}

impl<'r> RequestFacts<'r> {
    /// Facts without a body hash.
    ///
    /// ```
    /// let h = http::HeaderMap::new();
    /// let r = pay402_core::l402::RequestFacts::new(&http::Method::GET, "/", &h);
    /// assert!(r.body_sha256.is_none());
    /// ```
    pub fn new(
        method: &'r http::Method,
        path_and_query: &'r str,
        headers: &'r http::HeaderMap,
    ) -> RequestFacts<'r> {
        RequestFacts {
            method,
            path_and_query,
            headers,
            body_sha256: None,
        }
    }

    /// Adds the SHA-256 of the body.
    ///
    /// ```
    /// let h = http::HeaderMap::new();
    /// let r = pay402_core::l402::RequestFacts::new(&http::Method::GET, "/", &h).with_body(b"");
    /// assert_eq!(r.body_sha256.unwrap()[0], 0xe3);
    /// ```
    pub fn with_body(mut self, body: &[u8]) -> RequestFacts<'r> {
        self.body_sha256 = Some(Sha256::digest(body).into());
        self
    }

    /// The value of a `request=` binding caveat for this request.
    ///
    /// ```
    /// let h = http::HeaderMap::new();
    /// let r = pay402_core::l402::RequestFacts::new(&http::Method::POST, "/sms", &h).with_body(b"");
    /// assert!(r.binding_value().starts_with("POST /sms e3b0c442"));
    /// ```
    pub fn binding_value(&self) -> String {
        let mut s = String::with_capacity(self.path_and_query.len() + 80);
        s.push_str(self.method.as_str());
        s.push(' ');
        s.push_str(self.path_and_query);
        s.push(' ');
        let body = self
            .body_sha256
            .unwrap_or_else(|| Sha256::digest(b"").into());
        for b in body {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// What a satisfier sees: the service being accessed, the time, the request.
///
/// ```
/// use pay402_core::l402::VerifyContext;
/// use pay402_core::time::UnixTime;
/// let ctx = VerifyContext::new("api", UnixTime(1_700_000_000));
/// assert!(!ctx.strict);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'r> {
    /// The service the request is for.
    pub service: &'r str,
    /// The current time (core never reads a clock).
    pub now: UnixTime,
    /// A capability the request needs, if the server checks capabilities.
    pub capability: Option<&'r str>,
    /// The request, when the server provides it.
    pub request: Option<&'r RequestFacts<'r>>,
    /// Reject caveats that no satisfier knows (Aperture skips them).
    pub strict: bool,
    /// What this request requires a token to have paid for: its scope and
    /// price. When set, the `<service>_scope` and `<service>_paid_msat`
    /// caveats must be present and must cover it.
    pub grant: Option<Grant<'r>>,
}

/// The scope (route) and price a request requires a token to have paid for.
///
/// ```
/// use pay402_core::l402::Grant;
/// use pay402_core::money::Msat;
/// let g = Grant { scope: "/dear", price: Msat(1_000_000) };
/// assert_eq!(g.scope, "/dear");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant<'r> {
    /// The scope name the request falls under (for example a route pattern).
    pub scope: &'r str,
    /// The request's price.
    pub price: Msat,
}

impl<'r> VerifyContext<'r> {
    /// A context for `service` at time `now`.
    ///
    /// ```
    /// let ctx = pay402_core::l402::VerifyContext::new("api", pay402_core::time::UnixTime(0));
    /// assert_eq!(ctx.service, "api");
    /// ```
    pub fn new(service: &'r str, now: UnixTime) -> VerifyContext<'r> {
        VerifyContext {
            service,
            now,
            capability: None,
            request: None,
            strict: false,
            grant: None,
        }
    }

    /// Requires the token to have paid at least `grant.price` for `grant.scope`.
    ///
    /// ```
    /// use pay402_core::l402::{Grant, VerifyContext};
    /// use pay402_core::money::Msat;
    /// let ctx = VerifyContext::new("api", pay402_core::time::UnixTime(0))
    ///     .with_grant(Grant { scope: "/x", price: Msat(1_000) });
    /// assert_eq!(ctx.grant.unwrap().price, Msat(1_000));
    /// ```
    pub fn with_grant(mut self, grant: Grant<'r>) -> Self {
        self.grant = Some(grant);
        self
    }

    /// Requires a capability.
    ///
    /// ```
    /// let ctx = pay402_core::l402::VerifyContext::new("api", pay402_core::time::UnixTime(0)).with_capability("read");
    /// assert_eq!(ctx.capability, Some("read"));
    /// ```
    pub fn with_capability(mut self, capability: &'r str) -> Self {
        self.capability = Some(capability);
        self
    }

    /// Attaches the request.
    ///
    /// ```
    /// let h = http::HeaderMap::new();
    /// let req = pay402_core::l402::RequestFacts::new(&http::Method::GET, "/", &h);
    /// let ctx = pay402_core::l402::VerifyContext::new("api", pay402_core::time::UnixTime(0)).with_request(&req);
    /// assert!(ctx.request.is_some());
    /// ```
    pub fn with_request(mut self, request: &'r RequestFacts<'r>) -> Self {
        self.request = Some(request);
        self
    }

    /// Turns strict mode on or off.
    ///
    /// ```
    /// let ctx = pay402_core::l402::VerifyContext::new("api", pay402_core::time::UnixTime(0)).strict(true);
    /// assert!(ctx.strict);
    /// ```
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// Why a caveat rejected a token.
///
/// ```
/// use pay402_core::l402::CaveatError;
/// use pay402_core::problem::Reason;
/// assert_eq!(CaveatError::Expired.reason(), "token_expired");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaveatError {
    /// A `_valid_until` caveat has passed.
    #[error("token expired")]
    Expired,
    /// The `services` caveat does not list this service.
    #[error("token is not valid for this service")]
    WrongService,
    /// The capabilities caveat does not grant the needed capability.
    #[error("capability not granted")]
    CapabilityDenied,
    /// The request binding does not match this request.
    #[error("token is bound to a different request")]
    RequestMismatch,
    /// The token was bought for another scope (route), or names none.
    #[error("token was bought for another route")]
    WrongRoute,
    /// The request's price is higher than what the token paid, or the token
    /// does not say what it paid.
    #[error("the price of this request exceeds what the token paid")]
    PriceExceedsPaid,
    /// A later caveat widens an earlier one of the same condition.
    #[error("caveat {0} widens an earlier caveat")]
    Escalation(String),
    /// A caveat value does not parse.
    #[error("malformed caveat {0}")]
    Malformed(String),
    /// Strict mode: a caveat no satisfier knows.
    #[error("unknown caveat condition {0}")]
    Unknown(String),
    /// A user-defined satisfier rejected the request.
    #[error("caveat {condition} not satisfied: {detail}")]
    Failed {
        /// The condition.
        condition: String,
        /// The satisfier's explanation.
        detail: String,
    },
}

impl crate::problem::Reason for CaveatError {
    fn reason(&self) -> &'static str {
        match self {
            CaveatError::Expired => "token_expired",
            CaveatError::WrongService => "wrong_service",
            CaveatError::CapabilityDenied => "capability_denied",
            CaveatError::RequestMismatch => "request_mismatch",
            CaveatError::WrongRoute => "wrong_route",
            CaveatError::PriceExceedsPaid => "price_exceeds_paid",
            CaveatError::Escalation(_) => "caveat_escalation",
            CaveatError::Malformed(_) => "malformed_caveat",
            CaveatError::Unknown(_) => "unknown_caveat",
            CaveatError::Failed { .. } => "caveat_not_satisfied",
        }
    }
    fn status(&self) -> u16 {
        401
    }
}

/// A rule for one caveat condition.
///
/// Implement this to add conditions of your own; the satisfier sees the
/// request through [`VerifyContext::request`].
///
/// ```
/// use pay402_core::l402::{Caveat, CaveatError, Satisfier, VerifyContext};
/// /// `max_body=<bytes>`: only requests whose Content-Length is at most this.
/// struct MaxBody;
/// impl Satisfier for MaxBody {
///     fn handles(&self, condition: &str, _: &VerifyContext<'_>) -> bool { condition == "max_body" }
///     fn satisfy_previous(&self, prev: &Caveat<'_>, cur: &Caveat<'_>, _: &VerifyContext<'_>) -> Result<(), CaveatError> {
///         let (p, c): (u64, u64) = (prev.value.parse().unwrap_or(0), cur.value.parse().unwrap_or(u64::MAX));
///         if c <= p { Ok(()) } else { Err(CaveatError::Escalation("max_body".into())) }
///     }
///     fn satisfy_final(&self, cav: &Caveat<'_>, ctx: &VerifyContext<'_>) -> Result<(), CaveatError> {
///         let limit: u64 = cav.value.parse().map_err(|_| CaveatError::Malformed("max_body".into()))?;
///         let len = ctx.request.and_then(|r| r.headers.get("content-length"))
///             .and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).unwrap_or(0);
///         if len <= limit { Ok(()) } else {
///             Err(CaveatError::Failed { condition: "max_body".into(), detail: "body too large".into() })
///         }
///     }
/// }
/// ```
pub trait Satisfier: Send + Sync {
    /// Whether this satisfier is responsible for caveats with `condition`.
    fn handles(&self, condition: &str, ctx: &VerifyContext<'_>) -> bool;
    /// Checks that `current` only narrows `previous` (same condition, in order).
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError>;
    /// Checks the last caveat of the condition against this request.
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError>;
}

fn service_suffix<'c>(condition: &'c str, service: &str) -> Option<&'c str> {
    condition.strip_prefix(service)?.strip_prefix('_')
}

/// `services=name:tier[,…]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServicesSatisfier;

/// Splits `s` on a single ASCII byte (cheaper than a char searcher for the
/// short values caveats carry).
fn split_byte(s: &str, sep: u8) -> impl Iterator<Item = &str> + Clone {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let cur = rest?;
        match cur.as_bytes().iter().position(|&b| b == sep) {
            Some(i) => {
                rest = Some(&cur[i + 1..]);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

/// Parses one `name:tier` entry.
fn parse_service(part: &str) -> Result<(&str, u8), CaveatError> {
    let malformed = || CaveatError::Malformed("services".into());
    let colon = part
        .as_bytes()
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(malformed)?;
    let (name, tier) = (&part[..colon], &part.as_bytes()[colon + 1..]);
    if name.is_empty() || tier.is_empty() || tier.len() > 3 {
        return Err(malformed());
    }
    let mut t: u16 = 0;
    for &b in tier {
        if !b.is_ascii_digit() {
            return Err(malformed());
        }
        t = t * 10 + u16::from(b - b'0');
    }
    let tier = u8::try_from(t).map_err(|_| malformed())?;
    Ok((name, tier))
}

/// Validates a whole `name:tier[,…]` list and reports whether `service` is in it.
fn services_contain(value: &str, service: &str) -> Result<bool, CaveatError> {
    if value.is_empty() {
        return Err(CaveatError::Malformed("services".into()));
    }
    let mut found = false;
    for part in split_byte(value, b',') {
        let (name, _) = parse_service(part)?;
        found |= name == service;
    }
    Ok(found)
}

impl Satisfier for ServicesSatisfier {
    fn handles(&self, condition: &str, _: &VerifyContext<'_>) -> bool {
        condition == "services"
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        services_contain(previous.value, "")?;
        services_contain(current.value, "")?;
        for part in split_byte(current.value, b',') {
            let (name, tier) = parse_service(part)?;
            // Aperture: every service must already be present; a tier may not rise.
            let mut prev = split_byte(previous.value, b',').filter_map(|p| parse_service(p).ok());
            if !prev.any(|(n, t)| n == name && tier <= t) {
                return Err(CaveatError::Escalation("services".into()));
            }
        }
        Ok(())
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if services_contain(caveat.value, ctx.service)? {
            Ok(())
        } else {
            Err(CaveatError::WrongService)
        }
    }
}

/// `<service>_capabilities=a,b`.
///
/// An empty list is accepted as Aperture mints it (it does not mean "deny").
#[derive(Clone, Copy, Debug, Default)]
pub struct CapabilitiesSatisfier;

fn caps(value: &str) -> impl Iterator<Item = &str> + Clone {
    split_byte(value, b',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

impl Satisfier for CapabilitiesSatisfier {
    fn handles(&self, condition: &str, ctx: &VerifyContext<'_>) -> bool {
        service_suffix(condition, ctx.service) == Some("capabilities")
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        let prev = caps(previous.value);
        let mut cur = caps(current.value).peekable();
        // An empty list grants everything, so emptying a non-empty list widens it.
        if cur.peek().is_none() && prev.clone().next().is_some() {
            return Err(CaveatError::Escalation("capabilities".into()));
        }
        if cur.all(|c| prev.clone().any(|p| p == c)) {
            Ok(())
        } else {
            Err(CaveatError::Escalation("capabilities".into()))
        }
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        let Some(needed) = ctx.capability else {
            return Ok(());
        };
        let mut list = caps(caveat.value).peekable();
        if list.peek().is_none() || list.any(|c| c == needed) {
            Ok(())
        } else {
            Err(CaveatError::CapabilityDenied)
        }
    }
}

/// `<service>_valid_until=<unix seconds>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidUntilSatisfier;

fn parse_ts(value: &str) -> Result<u64, CaveatError> {
    parse_u64(value, "valid_until")
}

/// A decimal `u64` without sign, spaces or leading `+`.
fn parse_u64(value: &str, condition: &str) -> Result<u64, CaveatError> {
    let malformed = || CaveatError::Malformed(condition.into());
    if value.is_empty() {
        return Err(malformed());
    }
    let mut t: u64 = 0;
    for &b in value.as_bytes() {
        if !b.is_ascii_digit() {
            return Err(malformed());
        }
        t = t
            .checked_mul(10)
            .and_then(|t| t.checked_add(u64::from(b - b'0')))
            .ok_or_else(malformed)?;
    }
    Ok(t)
}

impl Satisfier for ValidUntilSatisfier {
    fn handles(&self, condition: &str, ctx: &VerifyContext<'_>) -> bool {
        service_suffix(condition, ctx.service) == Some("valid_until")
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if parse_ts(current.value)? <= parse_ts(previous.value)? {
            Ok(())
        } else {
            Err(CaveatError::Escalation("valid_until".into()))
        }
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if ctx.now.0 < parse_ts(caveat.value)? {
            Ok(())
        } else {
            Err(CaveatError::Expired)
        }
    }
}

/// `request=<METHOD> <path?query> <sha256(body) hex>`: binds a token to one request.
///
/// Two binding caveats must be identical (there is nothing narrower than one
/// exact request). Without request facts in the context the caveat fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestBindingSatisfier;

/// The condition name of the request binding caveat.
pub const REQUEST_CONDITION: &str = "request";

impl Satisfier for RequestBindingSatisfier {
    fn handles(&self, condition: &str, _: &VerifyContext<'_>) -> bool {
        condition == REQUEST_CONDITION
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if previous.value == current.value {
            Ok(())
        } else {
            Err(CaveatError::Escalation(REQUEST_CONDITION.into()))
        }
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        let req = ctx.request.ok_or(CaveatError::RequestMismatch)?;
        let mut parts = caveat.value.splitn(3, ' ');
        let (Some(method), Some(path), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CaveatError::Malformed(REQUEST_CONDITION.into()));
        };
        let mut want = [0u8; 32];
        if hash.len() != 64 || hex::decode_to_slice(hash, &mut want).is_err() {
            return Err(CaveatError::Malformed(REQUEST_CONDITION.into()));
        }
        let body = req.body_sha256.ok_or(CaveatError::RequestMismatch)?;
        if method == req.method.as_str() && path == req.path_and_query && body == want {
            Ok(())
        } else {
            Err(CaveatError::RequestMismatch)
        }
    }
}

/// `<service>_scope=<scope>`: the scope (route) a token was bought for.
///
/// Two scope caveats must be identical. Without a [`VerifyContext::grant`]
/// the caveat holds (the verifier does not check scopes).
///
/// ```
/// use pay402_core::l402::caveat::verify_caveats;
/// use pay402_core::l402::{CaveatError, Grant, VerifyContext};
/// use pay402_core::money::Msat;
/// use pay402_core::time::UnixTime;
/// let caveats: [&[u8]; 2] = [b"api_scope=/cheap", b"api_paid_msat=1000"];
/// let on = |scope| VerifyContext::new("api", UnixTime(0)).with_grant(Grant { scope, price: Msat(1_000) });
/// assert!(verify_caveats(caveats, &[], &on("/cheap")).is_ok());
/// assert_eq!(verify_caveats(caveats, &[], &on("/dear")), Err(CaveatError::WrongRoute));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ScopeSatisfier;

impl Satisfier for ScopeSatisfier {
    fn handles(&self, condition: &str, ctx: &VerifyContext<'_>) -> bool {
        service_suffix(condition, ctx.service) == Some("scope")
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if previous.value == current.value {
            Ok(())
        } else {
            Err(CaveatError::Escalation("scope".into()))
        }
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        match ctx.grant {
            Some(g) if g.scope != caveat.value => Err(CaveatError::WrongRoute),
            _ => Ok(()),
        }
    }
}

/// `<service>_paid_msat=<msat>`: what a token paid. A later caveat may only
/// lower it; the request's price must not exceed the last one.
///
/// ```
/// use pay402_core::l402::caveat::verify_caveats;
/// use pay402_core::l402::{CaveatError, Grant, VerifyContext};
/// use pay402_core::money::Msat;
/// use pay402_core::time::UnixTime;
/// let caveats: [&[u8]; 2] = [b"api_scope=/q", b"api_paid_msat=7000"];
/// let at = |msat| VerifyContext::new("api", UnixTime(0)).with_grant(Grant { scope: "/q", price: Msat(msat) });
/// assert!(verify_caveats(caveats, &[], &at(7_000)).is_ok());
/// assert!(verify_caveats(caveats, &[], &at(1_000)).is_ok());
/// assert_eq!(verify_caveats(caveats, &[], &at(7_001)), Err(CaveatError::PriceExceedsPaid));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PaidSatisfier;

impl Satisfier for PaidSatisfier {
    fn handles(&self, condition: &str, ctx: &VerifyContext<'_>) -> bool {
        service_suffix(condition, ctx.service) == Some("paid_msat")
    }
    fn satisfy_previous(
        &self,
        previous: &Caveat<'_>,
        current: &Caveat<'_>,
        _: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        if parse_u64(current.value, "paid_msat")? <= parse_u64(previous.value, "paid_msat")? {
            Ok(())
        } else {
            Err(CaveatError::Escalation("paid_msat".into()))
        }
    }
    fn satisfy_final(
        &self,
        caveat: &Caveat<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), CaveatError> {
        let paid = parse_u64(caveat.value, "paid_msat")?;
        match ctx.grant {
            Some(g) if g.price.0 > paid => Err(CaveatError::PriceExceedsPaid),
            _ => Ok(()),
        }
    }
}

/// Number of built-in satisfiers.
const BUILTINS: usize = 6;

/// `satisfy_previous` of built-in `i` (static dispatch, so it inlines).
fn builtin_previous(
    i: usize,
    prev: &Caveat<'_>,
    cur: &Caveat<'_>,
    ctx: &VerifyContext<'_>,
) -> Result<(), CaveatError> {
    match i {
        0 => ServicesSatisfier.satisfy_previous(prev, cur, ctx),
        1 => CapabilitiesSatisfier.satisfy_previous(prev, cur, ctx),
        2 => ValidUntilSatisfier.satisfy_previous(prev, cur, ctx),
        3 => RequestBindingSatisfier.satisfy_previous(prev, cur, ctx),
        4 => ScopeSatisfier.satisfy_previous(prev, cur, ctx),
        _ => PaidSatisfier.satisfy_previous(prev, cur, ctx),
    }
}

/// `satisfy_final` of built-in `i`.
fn builtin_final(i: usize, cav: &Caveat<'_>, ctx: &VerifyContext<'_>) -> Result<(), CaveatError> {
    match i {
        0 => ServicesSatisfier.satisfy_final(cav, ctx),
        1 => CapabilitiesSatisfier.satisfy_final(cav, ctx),
        2 => ValidUntilSatisfier.satisfy_final(cav, ctx),
        3 => RequestBindingSatisfier.satisfy_final(cav, ctx),
        4 => ScopeSatisfier.satisfy_final(cav, ctx),
        _ => PaidSatisfier.satisfy_final(cav, ctx),
    }
}

/// Which built-in satisfier handles `condition` (one string comparison or two).
fn builtin_for(condition: &str, service: &str) -> Option<usize> {
    match condition {
        "services" => Some(0),
        REQUEST_CONDITION => Some(3),
        _ => match service_suffix(condition, service)? {
            "capabilities" => Some(1),
            "valid_until" => Some(2),
            "scope" => Some(4),
            "paid_msat" => Some(5),
            _ => None,
        },
    }
}

/// Most user-defined satisfiers checked without allocating.
const INLINE_EXTRA: usize = 8;

/// Runs the built-in satisfiers and `extra` over a macaroon's caveats.
///
/// Caveats are read once, in order. Each satisfier sees the caveats it
/// handles: every one after the first must narrow its predecessor
/// (`satisfy_previous`, checked as it is read) and the last must hold
/// (`satisfy_final`, checked after all were read, built-ins first). Caveats
/// that do not parse as `condition=value`, and conditions no satisfier
/// handles, are skipped (strict mode: rejected).
///
/// ```
/// use pay402_core::l402::caveat::verify_caveats;
/// use pay402_core::l402::{CaveatError, VerifyContext};
/// use pay402_core::time::UnixTime;
/// let caveats: [&[u8]; 2] = [b"services=api:0", b"api_valid_until=100"];
/// let ctx = VerifyContext::new("api", UnixTime(99));
/// assert!(verify_caveats(caveats, &[], &ctx).is_ok());
/// let late = VerifyContext::new("api", UnixTime(100));
/// assert_eq!(verify_caveats(caveats, &[], &late), Err(CaveatError::Expired));
/// ```
pub fn verify_caveats<'c, I>(
    caveats: I,
    extra: &[&dyn Satisfier],
    ctx: &VerifyContext<'_>,
) -> Result<(), CaveatError>
where
    I: IntoIterator<Item = &'c [u8]>,
{
    let mut last_builtin: [Option<Caveat<'c>>; BUILTINS] = [None; BUILTINS];
    let mut inline_extra: [Option<Caveat<'c>>; INLINE_EXTRA] = [None; INLINE_EXTRA];
    let mut heap_extra: Vec<Option<Caveat<'c>>> = Vec::new();
    let last_extra: &mut [Option<Caveat<'c>>] = if extra.len() <= INLINE_EXTRA {
        &mut inline_extra[..extra.len()]
    } else {
        heap_extra.resize(extra.len(), None);
        &mut heap_extra
    };
    for raw in caveats {
        let Some(cav) = Caveat::parse(raw) else {
            if ctx.strict {
                return Err(CaveatError::Unknown(
                    String::from_utf8_lossy(raw).into_owned(),
                ));
            }
            continue;
        };
        let mut handled = false;
        if let Some(i) = builtin_for(cav.condition, ctx.service) {
            handled = true;
            if let Some(prev) = &last_builtin[i] {
                builtin_previous(i, prev, &cav, ctx)?;
            }
            last_builtin[i] = Some(cav);
        }
        for (sat, last) in extra.iter().zip(last_extra.iter_mut()) {
            if sat.handles(cav.condition, ctx) {
                handled = true;
                if let Some(prev) = last {
                    sat.satisfy_previous(prev, &cav, ctx)?;
                }
                *last = Some(cav);
            }
        }
        if ctx.strict && !handled {
            return Err(CaveatError::Unknown(cav.condition.to_owned()));
        }
    }
    for (i, last) in last_builtin.iter().enumerate() {
        if let Some(cav) = last {
            builtin_final(i, cav, ctx)?;
        }
    }
    if ctx.grant.is_some() {
        // A token that does not say what it paid for grants nothing here.
        if last_builtin[4].is_none() {
            return Err(CaveatError::WrongRoute);
        }
        if last_builtin[5].is_none() {
            return Err(CaveatError::PriceExceedsPaid);
        }
    }
    for (sat, last) in extra.iter().zip(last_extra.iter()) {
        if let Some(cav) = last {
            sat.satisfy_final(cav, ctx)?;
        }
    }
    Ok(())
}

/// Builders for the caveats pay402 mints.
pub mod build {
    use super::*;

    /// `services=<service>:<tier>`.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::caveat::build::services("api", 0), "services=api:0");
    /// ```
    pub fn services(service: &str, tier: u8) -> String {
        format!("services={service}:{tier}")
    }

    /// `<service>_capabilities=a,b`.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::caveat::build::capabilities("api", &["read", "write"]), "api_capabilities=read,write");
    /// ```
    pub fn capabilities(service: &str, caps: &[&str]) -> String {
        format!("{service}_capabilities={}", caps.join(","))
    }

    /// `<service>_valid_until=<unix seconds>`.
    ///
    /// ```
    /// use pay402_core::time::UnixTime;
    /// assert_eq!(pay402_core::l402::caveat::build::valid_until("api", UnixTime(5)), "api_valid_until=5");
    /// ```
    pub fn valid_until(service: &str, t: UnixTime) -> String {
        format!("{service}_valid_until={}", t.0)
    }

    /// `<service>_scope=<scope>`: the scope (route) the token is bought for.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::caveat::build::scope("api", "/dear"), "api_scope=/dear");
    /// ```
    pub fn scope(service: &str, scope: &str) -> String {
        format!("{service}_scope={scope}")
    }

    /// `<service>_paid_msat=<msat>`: what the token pays.
    ///
    /// ```
    /// use pay402_core::money::Msat;
    /// assert_eq!(pay402_core::l402::caveat::build::paid("api", Msat(1_000)), "api_paid_msat=1000");
    /// ```
    pub fn paid(service: &str, amount: Msat) -> String {
        format!("{service}_paid_msat={}", amount.0)
    }

    /// `request=<METHOD> <path?query> <sha256 hex>` for this request.
    ///
    /// ```
    /// let h = http::HeaderMap::new();
    /// let r = pay402_core::l402::RequestFacts::new(&http::Method::GET, "/x", &h);
    /// assert!(pay402_core::l402::caveat::build::request_binding(&r).starts_with("request=GET /x "));
    /// ```
    pub fn request_binding(req: &RequestFacts<'_>) -> String {
        format!("{REQUEST_CONDITION}={}", req.binding_value())
    }
}
