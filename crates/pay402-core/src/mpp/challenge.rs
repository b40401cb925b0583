//! The `WWW-Authenticate: Payment …` challenge: parsed from every header line
//! (and from comma-joined lists inside one line), and emitted.
//!
//! Parsing uses the scheme-agnostic RFC 9110 reader ([`crate::auth_header`]),
//! so quoting, escaping, list splitting, case-insensitive names and other
//! schemes' parameters are handled once for every rail. On top of it:
//! - parameters are matched case-insensitively; unknown ones are ignored;
//! - a challenge that repeats a parameter is refused (Aperture keeps the
//!   first, lnget the last, mppx throws: an ambiguous offer is not paid);
//! - an incomplete or invalid offer is skipped and reported in
//!   [`ChallengeList::skipped`], the others are kept (as Aperture and pympp);
//! - `request`, `opaque`, `expires` and `digest` stay the received strings
//!   (they are HMAC'd as sent); `request` is decoded only by a method;
//! - `description` alone also understands mppx's non-standard `\uXXXX`
//!   escape (display only; it is not HMAC'd);
//! - a header line that is not UTF-8 is read as Latin-1 (what fetch-based
//!   servers send for `é`).
//!
//! Emitting writes `Payment id, realm, method, intent, request[, expires]
//! [, digest][, description][, header][, opaque]`, every value quoted,
//! escaping only `"` and `\`. It refuses control characters and non-ASCII in
//! every bound parameter, and `|` in `realm` (the HMAC delimiter is not
//! escaped). A non-ASCII `description` is written with `\uXXXX` escapes, as
//! mppx and pympp write it, so the header stays ASCII.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::auth_header::{self, HeaderSyntaxError};
use crate::problem::Reason;
use crate::time::UnixTime;

use super::b64url;
use super::rfc3339;

/// The auth scheme name.
pub const SCHEME: &str = "Payment";
/// Longest `request` accepted (characters of base64url), as mppx.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;
/// Longest `opaque` accepted.
pub const MAX_OPAQUE_LEN: usize = 4096;
/// Longest `id`, `realm`, `digest` or `header` accepted.
pub const MAX_SHORT_PARAM_LEN: usize = 512;
/// Longest `method` or `intent` accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `description` accepted.
pub const MAX_DESCRIPTION_LEN: usize = 2048;
/// Longest `WWW-Authenticate` line accepted (it may hold several challenges).
pub const MAX_CHALLENGE_HEADER: usize = 64 * 1024;

/// Why a challenge could not be read, or could not be emitted.
///
/// ```
/// use pay402_core::mpp::{ChallengeError, ChallengeList};
/// let list = ChallengeList::parse([b"Payment id=\"a\", realm=\"r\"".as_slice()]);
/// assert_eq!(list.into_result().unwrap_err(), ChallengeError::MissingParameter("method"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header line is not RFC 9110 challenge syntax.
    #[error("malformed WWW-Authenticate: {0}")]
    Syntax(#[from] HeaderSyntaxError),
    /// A required parameter is absent.
    #[error("Payment challenge has no {0} parameter")]
    MissingParameter(&'static str),
    /// `id` is empty.
    #[error("Payment challenge has an empty id")]
    EmptyId,
    /// A parameter occurs twice (names compared case-insensitively).
    #[error("Payment challenge repeats a parameter")]
    DuplicateParameter,
    /// `method` is not `[a-z][a-z0-9:_-]*`.
    #[error("Payment challenge method is not a lowercase method id")]
    InvalidMethod,
    /// `intent` is not `1*(ALPHA / DIGIT / "-")`.
    #[error("Payment challenge intent is not a token")]
    InvalidIntent,
    /// `request` is not unpadded base64url.
    #[error("Payment challenge request is not base64url")]
    InvalidRequest,
    /// `opaque` is not unpadded base64url.
    #[error("Payment challenge opaque is not base64url")]
    InvalidOpaque,
    /// A parameter is longer than its bound.
    #[error("Payment challenge parameter {0} is too long")]
    TooLong(&'static str),
    /// No `Payment` challenge at all.
    #[error("no Payment challenge offered")]
    NoPaymentChallenge,
    /// Emitting: a bound parameter holds a control character or non-ASCII.
    #[error("Payment challenge parameter {0} holds a character that cannot be sent")]
    ForbiddenCharacter(&'static str),
    /// Emitting: `realm` holds `|`, which would make the HMAC input ambiguous.
    #[error("Payment challenge realm contains '|'")]
    PipeInRealm,
}

impl Reason for ChallengeError {
    fn reason(&self) -> &'static str {
        match self {
            ChallengeError::Syntax(_) => "malformed_challenge",
            ChallengeError::MissingParameter(_) => "challenge_missing_parameter",
            ChallengeError::EmptyId => "challenge_empty_id",
            ChallengeError::DuplicateParameter => "challenge_duplicate_parameter",
            ChallengeError::InvalidMethod => "challenge_invalid_method",
            ChallengeError::InvalidIntent => "challenge_invalid_intent",
            ChallengeError::InvalidRequest => "challenge_invalid_request",
            ChallengeError::InvalidOpaque => "challenge_invalid_opaque",
            ChallengeError::TooLong(_) => "challenge_parameter_too_long",
            ChallengeError::NoPaymentChallenge => "no_payment_challenge",
            ChallengeError::ForbiddenCharacter(_) => "challenge_forbidden_character",
            ChallengeError::PipeInRealm => "challenge_realm_has_pipe",
        }
    }
}

/// One `Payment` challenge: its auth-params as strings.
///
/// The same type is the `challenge` object a credential echoes
/// ([`super::Credential`]): it (de)serializes to the JSON members of that
/// object, `None` members omitted, in alphabetical order (as mppx and pympp
/// write them, so a pay402 credential is byte-identical to theirs).
///
/// ```
/// use pay402_core::mpp::Challenge;
/// let c = Challenge::new("id1", "api.example.com", "lightning", "charge", "e30");
/// assert_eq!(
///     c.to_header_value().unwrap(),
///     r#"Payment id="id1", realm="api.example.com", method="lightning", intent="charge", request="e30""#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Challenge<'a> {
    /// Display text (not bound by the HMAC).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// Body digest, exactly as received.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Cow<'a, str>>,
    /// RFC 3339 expiry, exactly as received.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Cow<'a, str>>,
    /// The header field the credential goes in, when not `Authorization`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Cow<'a, str>>,
    /// The challenge id (normally the HMAC of the other bound parameters).
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The intent (`charge`, `session`, …).
    #[serde(borrow)]
    pub intent: Cow<'a, str>,
    /// The payment method (`lightning`, `evm`, …).
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// base64url of JCS JSON server data, exactly as received.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub opaque: Option<Cow<'a, str>>,
    /// The protection space.
    #[serde(borrow)]
    pub realm: Cow<'a, str>,
    /// base64url of the JCS JSON request, exactly as received.
    #[serde(borrow)]
    pub request: Cow<'a, str>,
}

/// Whether `s` is a method id as peers accept it: `[a-z][a-z0-9:_-]*`.
///
/// ```
/// use pay402_core::mpp::challenge::is_method_id;
/// assert!(is_method_id("lightning") && is_method_id("tempo-v2") && is_method_id("vendor:x"));
/// assert!(!is_method_id("Tempo") && !is_method_id("") && !is_method_id("1x"));
/// ```
pub fn is_method_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b':' | b'_' | b'-')
        })
}

/// Whether `s` is an intent token: `1*(ALPHA / DIGIT / "-")`.
///
/// ```
/// use pay402_core::mpp::challenge::is_intent;
/// assert!(is_intent("charge") && is_intent("session-v2"));
/// assert!(!is_intent("a b") && !is_intent(""));
/// ```
pub fn is_intent(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Reads a quoted value with mppx's `\uXXXX` escape (UTF-16 units, surrogate
/// pairs joined) besides RFC 9110 quoted-pairs. `None` if it holds none.
fn unescape_u(raw: &str) -> Option<String> {
    if !raw.contains("\\u") {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
    };
    let mut it = raw.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == '\\' {
            let hex = raw.get(i + 2..i + 6);
            if raw[i + 1..].starts_with('u')
                && let Some(h) = hex
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && let Ok(u) = u16::from_str_radix(h, 16)
            {
                units.push(u);
                for _ in 0..5 {
                    it.next();
                }
                continue;
            }
            flush(&mut units, &mut out);
            if let Some((_, n)) = it.next() {
                out.push(n);
            }
            continue;
        }
        flush(&mut units, &mut out);
        out.push(c);
    }
    flush(&mut units, &mut out);
    Some(out)
}

impl<'a> Challenge<'a> {
    /// A challenge with the five required parameters and no optional ones.
    ///
    /// ```
    /// let c = pay402_core::mpp::Challenge::new("i", "r", "lightning", "charge", "e30");
    /// assert!(c.expires.is_none());
    /// ```
    pub fn new(
        id: impl Into<Cow<'a, str>>,
        realm: impl Into<Cow<'a, str>>,
        method: impl Into<Cow<'a, str>>,
        intent: impl Into<Cow<'a, str>>,
        request: impl Into<Cow<'a, str>>,
    ) -> Challenge<'a> {
        Challenge {
            id: id.into(),
            realm: realm.into(),
            method: method.into(),
            intent: intent.into(),
            request: request.into(),
            ..Challenge::default()
        }
    }

    /// An owned copy.
    ///
    /// ```
    /// let c = pay402_core::mpp::Challenge::new("i", "r", "m", "c", "e30").into_owned();
    /// assert_eq!(c.id, "i");
    /// ```
    pub fn into_owned(self) -> Challenge<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        Challenge {
            id: own(self.id),
            realm: own(self.realm),
            method: own(self.method),
            intent: own(self.intent),
            request: own(self.request),
            expires: self.expires.map(own),
            digest: self.digest.map(own),
            description: self.description.map(own),
            opaque: self.opaque.map(own),
            header: self.header.map(own),
        }
    }

    /// The `expires` instant, if the challenge has a valid one.
    ///
    /// ```
    /// let mut c = pay402_core::mpp::Challenge::new("i", "r", "m", "c", "e30");
    /// c.expires = Some("2026-01-01T00:15:00Z".into());
    /// assert_eq!(c.expires_at(), Some(pay402_core::time::UnixTime(1_767_226_500)));
    /// ```
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.expires.as_deref().and_then(|e| rfc3339::parse(e).ok())
    }

    /// The field the credential must be sent in (`Authorization` unless `header` names another).
    ///
    /// ```
    /// let mut c = pay402_core::mpp::Challenge::new("i", "r", "m", "c", "e30");
    /// assert_eq!(c.credential_header(), "Authorization");
    /// c.header = Some("Payment-Authorization".into());
    /// assert_eq!(c.credential_header(), "Payment-Authorization");
    /// ```
    pub fn credential_header(&self) -> &str {
        self.header.as_deref().unwrap_or("Authorization")
    }

    /// Checks the grammar and bounds every reader applies (parsed challenges
    /// and echoed ones alike).
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeError};
    /// let c = Challenge::new("i", "r", "Lightning", "charge", "e30");
    /// assert_eq!(c.check(), Err(ChallengeError::InvalidMethod));
    /// ```
    pub fn check(&self) -> Result<(), ChallengeError> {
        if self.id.is_empty() {
            return Err(ChallengeError::EmptyId);
        }
        let too_long = |v: &str, max: usize, name| {
            if v.len() > max {
                Err(ChallengeError::TooLong(name))
            } else {
                Ok(())
            }
        };
        too_long(&self.id, MAX_SHORT_PARAM_LEN, "id")?;
        too_long(&self.realm, MAX_SHORT_PARAM_LEN, "realm")?;
        too_long(&self.request, MAX_REQUEST_LEN, "request")?;
        if let Some(d) = &self.digest {
            too_long(d, MAX_SHORT_PARAM_LEN, "digest")?;
        }
        if let Some(e) = &self.expires {
            too_long(e, rfc3339::MAX_RFC3339_LEN, "expires")?;
        }
        if let Some(h) = &self.header {
            too_long(h, MAX_SHORT_PARAM_LEN, "header")?;
        }
        if let Some(d) = &self.description {
            too_long(d, MAX_DESCRIPTION_LEN, "description")?;
        }
        if let Some(o) = &self.opaque {
            too_long(o, MAX_OPAQUE_LEN, "opaque")?;
            if !b64url::is_nopad_alphabet(o) {
                return Err(ChallengeError::InvalidOpaque);
            }
        }
        if !is_method_id(&self.method) {
            return Err(ChallengeError::InvalidMethod);
        }
        if !is_intent(&self.intent) {
            return Err(ChallengeError::InvalidIntent);
        }
        if !b64url::is_nopad_alphabet(&self.request) {
            return Err(ChallengeError::InvalidRequest);
        }
        Ok(())
    }

    fn from_auth(ch: auth_header::AuthChallenge<'a>) -> Result<Challenge<'a>, ChallengeError> {
        if ch.has_duplicate_params() {
            return Err(ChallengeError::DuplicateParameter);
        }
        let mut c = Challenge::default();
        let (mut id, mut realm, mut method, mut intent, mut request) =
            (None, None, None, None, None);
        for p in ch.params {
            let n = p.name;
            let is = |s: &str| n.eq_ignore_ascii_case(s);
            if is("id") {
                id = Some(p.value);
            } else if is("realm") {
                realm = Some(p.value);
            } else if is("method") {
                method = Some(p.value);
            } else if is("intent") {
                intent = Some(p.value);
            } else if is("request") {
                request = Some(p.value);
            } else if is("expires") {
                c.expires = Some(p.value);
            } else if is("digest") {
                c.digest = Some(p.value);
            } else if is("opaque") {
                c.opaque = Some(p.value);
            } else if is("header") {
                c.header = Some(p.value);
            } else if is("description") {
                c.description = Some(match unescape_u(p.raw) {
                    Some(s) => Cow::Owned(s),
                    None => p.value,
                });
            }
        }
        c.id = id.ok_or(ChallengeError::MissingParameter("id"))?;
        c.realm = realm.ok_or(ChallengeError::MissingParameter("realm"))?;
        c.method = method.ok_or(ChallengeError::MissingParameter("method"))?;
        c.intent = intent.ok_or(ChallengeError::MissingParameter("intent"))?;
        c.request = request.ok_or(ChallengeError::MissingParameter("request"))?;
        c.check()?;
        Ok(c)
    }

    /// Checks what a server may emit: [`Challenge::check`], plus no control
    /// characters or non-ASCII in bound parameters and no `|` in `realm`.
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeError};
    /// let c = Challenge::new("i", "a|b", "lightning", "charge", "e30");
    /// assert_eq!(c.check_emit(), Err(ChallengeError::PipeInRealm));
    /// ```
    pub fn check_emit(&self) -> Result<(), ChallengeError> {
        self.check()?;
        let plain = |v: &str, name| {
            if v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                Ok(())
            } else {
                Err(ChallengeError::ForbiddenCharacter(name))
            }
        };
        plain(&self.id, "id")?;
        plain(&self.realm, "realm")?;
        if let Some(e) = &self.expires {
            plain(e, "expires")?;
        }
        if let Some(d) = &self.digest {
            plain(d, "digest")?;
        }
        if let Some(h) = &self.header {
            plain(h, "header")?;
        }
        if let Some(d) = &self.description
            && d.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(ChallengeError::ForbiddenCharacter("description"));
        }
        if self.realm.contains('|') {
            return Err(ChallengeError::PipeInRealm);
        }
        Ok(())
    }

    /// The `WWW-Authenticate` value (one challenge), after [`Challenge::check_emit`].
    ///
    /// ```
    /// let mut c = pay402_core::mpp::Challenge::new("i", "say \"hi\"", "lightning", "charge", "e30");
    /// c.description = Some("1 × ticket — VIP".into());
    /// let v = c.to_header_value().unwrap();
    /// assert!(v.contains(r#"realm="say \"hi\"""#));
    /// assert!(v.ends_with(r#"description="1 \u00d7 ticket \u2014 VIP""#));
    /// ```
    pub fn to_header_value(&self) -> Result<String, ChallengeError> {
        self.check_emit()?;
        let mut s = String::with_capacity(96 + self.request.len());
        s.push_str(SCHEME);
        let mut first = true;
        let mut put = |s: &mut String, name: &str, value: &str, ascii_only: bool| {
            s.push_str(if first { " " } else { ", " });
            first = false;
            s.push_str(name);
            s.push_str("=\"");
            for c in value.chars() {
                match c {
                    '"' | '\\' => {
                        s.push('\\');
                        s.push(c);
                    }
                    c if ascii_only && !c.is_ascii() => {
                        let mut buf = [0u16; 2];
                        for u in c.encode_utf16(&mut buf) {
                            s.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                    c => s.push(c),
                }
            }
            s.push('"');
        };
        put(&mut s, "id", &self.id, false);
        put(&mut s, "realm", &self.realm, false);
        put(&mut s, "method", &self.method, false);
        put(&mut s, "intent", &self.intent, false);
        put(&mut s, "request", &self.request, false);
        if let Some(v) = &self.expires {
            put(&mut s, "expires", v, false);
        }
        if let Some(v) = &self.digest {
            put(&mut s, "digest", v, false);
        }
        if let Some(v) = &self.description {
            put(&mut s, "description", v, true);
        }
        if let Some(v) = &self.header {
            put(&mut s, "header", v, false);
        }
        if let Some(v) = &self.opaque {
            put(&mut s, "opaque", v, false);
        }
        Ok(s)
    }

    /// Decodes `request` (strict base64url) into `buf` and returns its JSON bytes.
    ///
    /// ```
    /// let c = pay402_core::mpp::Challenge::new("i", "r", "m", "c", "eyJhIjoxfQ");
    /// let mut buf = Vec::new();
    /// assert_eq!(c.request_json(&mut buf).unwrap(), br#"{"a":1}"#);
    /// ```
    pub fn request_json<'b>(
        &self,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], crate::b64::Base64Error> {
        b64url::decode_strict_into(&self.request, MAX_REQUEST_LEN, buf)?;
        Ok(buf.as_slice())
    }
}

/// Why one offer of a list was skipped.
///
/// ```
/// use pay402_core::mpp::ChallengeList;
/// let list = ChallengeList::parse([b"Payment id=\"a\", realm=\"r\"".as_slice()]);
/// assert_eq!(list.skipped()[0].index, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedOffer {
    /// The position of the offer among the `Payment` challenges seen (or of
    /// the header line, for a syntax error), counted from 0.
    pub index: usize,
    /// Why it was skipped.
    pub error: ChallengeError,
}

/// Every `Payment` challenge of a response, with the offers that were skipped.
///
/// ```
/// use pay402_core::mpp::ChallengeList;
/// let lines = [
///     b"L402 macaroon=\"m\", invoice=\"i\"".as_slice(),
///     b"Payment id=\"a\", realm=\"r\", method=\"lightning\", intent=\"charge\", request=\"e30\", Payment id=\"b\"".as_slice(),
/// ];
/// let list = ChallengeList::parse(lines);
/// assert_eq!(list.challenges().len(), 1);
/// assert_eq!(list.skipped().len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChallengeList<'a> {
    challenges: Vec<Challenge<'a>>,
    skipped: Vec<SkippedOffer>,
}

impl<'a> ChallengeList<'a> {
    /// Parses every `WWW-Authenticate` line (pass each line's bytes).
    ///
    /// Never fails: bad lines and bad offers are recorded in
    /// [`ChallengeList::skipped`]; see [`ChallengeList::into_result`].
    pub fn parse<I>(values: I) -> ChallengeList<'a>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut list = ChallengeList::default();
        let mut parsed = Vec::new();
        let mut seen = 0usize;
        for (line, v) in values.into_iter().enumerate() {
            match std::str::from_utf8(v) {
                Ok(s) => {
                    parsed.clear();
                    if let Err(e) =
                        auth_header::parse_challenges_bounded(s, MAX_CHALLENGE_HEADER, &mut parsed)
                    {
                        list.skipped.push(SkippedOffer {
                            index: line,
                            error: e.into(),
                        });
                        continue;
                    }
                    for ch in parsed.drain(..) {
                        list.push(ch, &mut seen);
                    }
                }
                Err(_) => {
                    // obs-text from a fetch-based server: Latin-1 bytes.
                    let s: String = v.iter().map(|&b| char::from(b)).collect();
                    let mut owned = Vec::new();
                    if let Err(e) =
                        auth_header::parse_challenges_bounded(&s, MAX_CHALLENGE_HEADER, &mut owned)
                    {
                        list.skipped.push(SkippedOffer {
                            index: line,
                            error: e.into(),
                        });
                        continue;
                    }
                    for ch in owned {
                        if !ch.scheme.eq_ignore_ascii_case(SCHEME) {
                            continue;
                        }
                        match Challenge::from_auth(ch) {
                            Ok(c) => list.challenges.push(c.into_owned()),
                            Err(error) => list.skipped.push(SkippedOffer { index: seen, error }),
                        }
                        seen += 1;
                    }
                }
            }
        }
        list
    }

    fn push(&mut self, ch: auth_header::AuthChallenge<'a>, seen: &mut usize) {
        if !ch.scheme.eq_ignore_ascii_case(SCHEME) {
            return;
        }
        match Challenge::from_auth(ch) {
            Ok(c) => self.challenges.push(c),
            Err(error) => self.skipped.push(SkippedOffer {
                index: *seen,
                error,
            }),
        }
        *seen += 1;
    }

    /// The valid challenges, in server order.
    ///
    /// ```
    /// assert!(pay402_core::mpp::ChallengeList::parse([b"".as_slice()]).challenges().is_empty());
    /// ```
    pub fn challenges(&self) -> &[Challenge<'a>] {
        &self.challenges
    }

    /// The offers that were skipped, and why.
    ///
    /// ```
    /// let l = pay402_core::mpp::ChallengeList::parse([b"Payment id=\"\"".as_slice()]);
    /// assert_eq!(l.skipped().len(), 1);
    /// ```
    pub fn skipped(&self) -> &[SkippedOffer] {
        &self.skipped
    }

    /// The challenges, or an error when there is none: the first skipped
    /// offer's error, else [`ChallengeError::NoPaymentChallenge`].
    ///
    /// ```
    /// use pay402_core::mpp::{ChallengeError, ChallengeList};
    /// let l = ChallengeList::parse([b"Basic realm=\"x\"".as_slice()]);
    /// assert_eq!(l.into_result().unwrap_err(), ChallengeError::NoPaymentChallenge);
    /// ```
    pub fn into_result(self) -> Result<Vec<Challenge<'a>>, ChallengeError> {
        if self.challenges.is_empty() {
            return Err(self
                .skipped
                .first()
                .map(|s| s.error)
                .unwrap_or(ChallengeError::NoPaymentChallenge));
        }
        Ok(self.challenges)
    }
}
