//! The L402 challenge (`WWW-Authenticate`), both wire variants.
//!
//! Variant A: `L402 macaroon="<b64>", invoice="<bolt11>"` (every deployment).
//! Variant B: `L402 version="0", token="<b64>", invoice="<bolt11>"`.
//! Parsing accepts both, `L402` or `LSAT` in any case, parameters in any order,
//! quoted or bare, unknown parameters ignored, other schemes skipped. Emitting
//! always produces Variant A with `macaroon` first.

use std::borrow::Cow;

use crate::auth_header::{self, HeaderSyntaxError};
use crate::problem::Reason;

/// Which scheme name a challenge or credential used.
///
/// ```
/// use pay402_core::l402::Scheme;
/// assert_eq!(Scheme::from_name("lsat"), Some(Scheme::Lsat));
/// assert_eq!(Scheme::L402.as_str(), "L402");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `L402`, the current name.
    L402,
    /// `LSAT`, the legacy name.
    Lsat,
}

impl Scheme {
    /// Matches a scheme name case-insensitively.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::Scheme::from_name("Bearer"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Scheme> {
        if name.eq_ignore_ascii_case("L402") {
            Some(Scheme::L402)
        } else if name.eq_ignore_ascii_case("LSAT") {
            Some(Scheme::Lsat)
        } else {
            None
        }
    }

    /// The canonical spelling.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::Scheme::Lsat.as_str(), "LSAT");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::L402 => "L402",
            Scheme::Lsat => "LSAT",
        }
    }
}

/// Why a `WWW-Authenticate` header could not be read as an L402 challenge.
///
/// ```
/// use pay402_core::l402::{ChallengeSet, ChallengeError};
/// let e = ChallengeSet::parse([b"L402 invoice=\"lnbc1\"".as_slice()]).unwrap_err();
/// assert_eq!(e, ChallengeError::MissingToken);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The header is not valid RFC 9110 challenge syntax.
    #[error("malformed WWW-Authenticate: {0}")]
    Syntax(#[from] HeaderSyntaxError),
    /// An L402 challenge has neither `macaroon` nor `token`.
    #[error("L402 challenge has no macaroon/token parameter")]
    MissingToken,
    /// An L402 challenge has no `invoice`.
    #[error("L402 challenge has no invoice parameter")]
    MissingInvoice,
    /// A parameter occurs twice in one challenge.
    #[error("L402 challenge repeats a parameter")]
    DuplicateParameter,
    /// `macaroon` and `token` are both present and differ.
    #[error("L402 challenge has conflicting macaroon and token")]
    ConflictingToken,
    /// A `version` other than `0`.
    #[error("unsupported L402 challenge version")]
    UnsupportedVersion,
    /// No L402 or LSAT challenge at all.
    #[error("no L402 challenge offered")]
    NoL402Challenge,
}

impl Reason for ChallengeError {
    fn reason(&self) -> &'static str {
        match self {
            ChallengeError::Syntax(_) => "malformed_challenge",
            ChallengeError::MissingToken => "challenge_missing_macaroon",
            ChallengeError::MissingInvoice => "challenge_missing_invoice",
            ChallengeError::DuplicateParameter => "challenge_duplicate_parameter",
            ChallengeError::ConflictingToken => "challenge_conflicting_token",
            ChallengeError::UnsupportedVersion => "challenge_unsupported_version",
            ChallengeError::NoL402Challenge => "no_l402_challenge",
        }
    }
}

/// One L402 challenge: a macaroon (or token) and an invoice.
///
/// ```
/// use pay402_core::l402::{Challenge, Scheme};
/// let c = Challenge::new("AgEB", "lnbcrt1");
/// assert_eq!(c.to_header_value(Scheme::L402), "L402 macaroon=\"AgEB\", invoice=\"lnbcrt1\"");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    scheme: Scheme,
    token: Cow<'a, str>,
    invoice: Cow<'a, str>,
}

impl<'a> Challenge<'a> {
    /// A challenge for emitting.
    ///
    /// ```
    /// let c = pay402_core::l402::Challenge::new("m", "i");
    /// assert_eq!(c.invoice(), "i");
    /// ```
    pub fn new(macaroon_b64: impl Into<Cow<'a, str>>, invoice: impl Into<Cow<'a, str>>) -> Self {
        Challenge {
            scheme: Scheme::L402,
            token: macaroon_b64.into(),
            invoice: invoice.into(),
        }
    }

    /// A challenge as it arrived under `scheme` (e.g. rebuilt from a
    /// journal to pay it again).
    ///
    /// ```
    /// use pay402_core::l402::{Challenge, Scheme};
    /// let c = Challenge::with_scheme(Scheme::Lsat, "m", "i");
    /// assert_eq!(c.scheme(), Scheme::Lsat);
    /// ```
    pub fn with_scheme(
        scheme: Scheme,
        macaroon_b64: impl Into<Cow<'a, str>>,
        invoice: impl Into<Cow<'a, str>>,
    ) -> Self {
        Challenge {
            scheme,
            token: macaroon_b64.into(),
            invoice: invoice.into(),
        }
    }

    /// The scheme it arrived under.
    ///
    /// ```
    /// let c = pay402_core::l402::Challenge::new("m", "i");
    /// assert_eq!(c.scheme(), pay402_core::l402::Scheme::L402);
    /// ```
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The macaroon (base64, any flavour), from `macaroon=` or `token=`.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::Challenge::new("m", "i").macaroon(), "m");
    /// ```
    pub fn macaroon(&self) -> &str {
        &self.token
    }

    /// The BOLT11 invoice.
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::Challenge::new("m", "i").invoice(), "i");
    /// ```
    pub fn invoice(&self) -> &str {
        &self.invoice
    }

    /// The Variant A header value under `scheme`.
    ///
    /// ```
    /// use pay402_core::l402::{Challenge, Scheme};
    /// assert!(Challenge::new("m", "i").to_header_value(Scheme::Lsat).starts_with("LSAT macaroon="));
    /// ```
    pub fn to_header_value(&self, scheme: Scheme) -> String {
        let mut s = String::with_capacity(32 + self.token.len() + self.invoice.len());
        s.push_str(scheme.as_str());
        s.push_str(" macaroon=\"");
        s.push_str(&self.token);
        s.push_str("\", invoice=\"");
        s.push_str(&self.invoice);
        s.push('"');
        s
    }

    /// An owned copy.
    ///
    /// ```
    /// let c = pay402_core::l402::Challenge::new("m", "i").into_owned();
    /// assert_eq!(c.macaroon(), "m");
    /// ```
    pub fn into_owned(self) -> Challenge<'static> {
        Challenge {
            scheme: self.scheme,
            token: Cow::Owned(self.token.into_owned()),
            invoice: Cow::Owned(self.invoice.into_owned()),
        }
    }

    pub(crate) fn from_auth(
        ch: auth_header::AuthChallenge<'a>,
        scheme: Scheme,
    ) -> Result<Self, ChallengeError> {
        if ch.has_duplicate_params() {
            return Err(ChallengeError::DuplicateParameter);
        }
        let mut macaroon = None;
        let mut token = None;
        let mut invoice = None;
        for p in ch.params {
            if p.name.eq_ignore_ascii_case("macaroon") {
                macaroon = Some(p.value);
            } else if p.name.eq_ignore_ascii_case("token") {
                token = Some(p.value);
            } else if p.name.eq_ignore_ascii_case("invoice") {
                invoice = Some(p.value);
            } else if p.name.eq_ignore_ascii_case("version") && p.value != "0" {
                return Err(ChallengeError::UnsupportedVersion);
            }
        }
        let token = match (macaroon, token) {
            (Some(m), Some(t)) if m != t => return Err(ChallengeError::ConflictingToken),
            (Some(m), _) => m,
            (None, Some(t)) => t,
            (None, None) => return Err(ChallengeError::MissingToken),
        };
        if token.is_empty() {
            return Err(ChallengeError::MissingToken);
        }
        let invoice = invoice
            .filter(|i| !i.is_empty())
            .ok_or(ChallengeError::MissingInvoice)?;
        Ok(Challenge {
            scheme,
            token,
            invoice,
        })
    }
}

/// Every L402/LSAT challenge found in a response's `WWW-Authenticate` headers.
///
/// ```
/// use pay402_core::l402::{ChallengeSet, Scheme};
/// let headers = [
///     b"Basic realm=\"x\"".as_slice(),
///     b"LSAT macaroon=\"AgE=\", invoice=\"lnbc1\", l402 Token=AgE=, Invoice=lnbc1, version=\"0\"",
/// ];
/// let set = ChallengeSet::parse(headers).unwrap();
/// assert_eq!(set.all().len(), 2);
/// assert_eq!(set.l402().unwrap().scheme(), Scheme::L402);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChallengeSet<'a> {
    challenges: Vec<Challenge<'a>>,
}

impl<'a> ChallengeSet<'a> {
    /// Parses every value of `WWW-Authenticate` (pass each header line).
    ///
    /// Non-L402 schemes are skipped. Malformed values and malformed L402
    /// challenges are skipped when at least one good L402 challenge is found,
    /// and reported (the first error) when none is. An empty set is not an
    /// error here (see [`ChallengeSet::l402`]).
    pub fn parse<I>(values: I) -> Result<ChallengeSet<'a>, ChallengeError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        // One broken header line (perhaps another scheme's) must not hide a
        // good L402 challenge: errors are reported only when nothing usable
        // was found.
        let mut challenges = Vec::new();
        let mut first_error = None;
        let mut parsed = Vec::new();
        for v in values {
            parsed.clear();
            match std::str::from_utf8(v) {
                Ok(s) => {
                    if let Err(e) = auth_header::parse_challenges_into(s, &mut parsed) {
                        first_error.get_or_insert(ChallengeError::Syntax(e));
                    }
                }
                Err(_) => {
                    first_error.get_or_insert(ChallengeError::Syntax(HeaderSyntaxError::NotUtf8));
                }
            }
            for ch in parsed.drain(..) {
                if let Some(scheme) = Scheme::from_name(ch.scheme) {
                    match Challenge::from_auth(ch, scheme) {
                        Ok(c) => challenges.push(c),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if challenges.is_empty()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        Ok(ChallengeSet { challenges })
    }

    /// The preferred challenge: the first `L402`, else the first `LSAT`.
    ///
    /// ```
    /// use pay402_core::l402::{ChallengeSet, ChallengeError};
    /// let set = ChallengeSet::parse([b"Bearer".as_slice()]).unwrap();
    /// assert_eq!(set.l402().unwrap_err(), ChallengeError::NoL402Challenge);
    /// ```
    pub fn l402(&self) -> Result<&Challenge<'a>, ChallengeError> {
        self.challenges
            .iter()
            .find(|c| c.scheme == Scheme::L402)
            .or_else(|| self.challenges.first())
            .ok_or(ChallengeError::NoL402Challenge)
    }

    /// All L402/LSAT challenges in order.
    ///
    /// ```
    /// let set = pay402_core::l402::ChallengeSet::parse([b"".as_slice()]).unwrap();
    /// assert!(set.all().is_empty());
    /// ```
    pub fn all(&self) -> &[Challenge<'a>] {
        &self.challenges
    }
}
