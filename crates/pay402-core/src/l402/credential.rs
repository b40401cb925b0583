//! The L402 credential (`Authorization: L402 <macaroons>:<preimage>`).
//!
//! Accepted: `L402` or `LSAT` in any case, one or more spaces, one or more
//! comma-separated macaroons in any base64 flavour, a 64-digit preimage in
//! either case. Several `Authorization` headers carrying L402 credentials are
//! an error (never "last one wins"). Emitted: the canonical form.

use crate::auth_header::{self, MAX_HEADER_VALUE};
use crate::lightning::Preimage;
use crate::problem::Reason;

use super::challenge::Scheme;

/// Most macaroons accepted in one credential.
pub const MAX_MACAROONS: usize = 8;

/// Why an `Authorization` header could not be read as an L402 credential.
///
/// ```
/// use pay402_core::l402::{Credential, CredentialError};
/// assert_eq!(Credential::parse("L402 abc").unwrap_err(), CredentialError::MissingPreimage);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Longer than the header limit.
    #[error("Authorization header too long")]
    TooLong,
    /// Not UTF-8.
    #[error("Authorization header is not valid UTF-8")]
    NotUtf8,
    /// Not an L402/LSAT credential.
    #[error("not an L402 credential")]
    NotL402,
    /// No `:<preimage>` part.
    #[error("L402 credential has no preimage")]
    MissingPreimage,
    /// The preimage is not 64 hex digits.
    #[error("L402 preimage must be 64 hex digits")]
    BadPreimage,
    /// An empty macaroon in the list.
    #[error("L402 credential has an empty macaroon")]
    EmptyMacaroon,
    /// A macaroon contains characters outside base64. Reported when the
    /// macaroon is decoded ([`PresentedToken::decode`](super::PresentedToken::decode)):
    /// parsing does not scan the macaroon, so the hot path reads it only once.
    #[error("L402 macaroon is not base64")]
    BadMacaroonChars,
    /// More than [`MAX_MACAROONS`] macaroons.
    #[error("too many macaroons in L402 credential")]
    TooManyMacaroons,
    /// Several `Authorization` headers carry L402 credentials.
    #[error("several L402 credentials in one request")]
    Multiple,
}

impl Reason for CredentialError {
    fn reason(&self) -> &'static str {
        match self {
            CredentialError::Multiple => "multiple_credentials",
            CredentialError::TooLong => "credential_too_large",
            CredentialError::BadPreimage => "invalid_preimage",
            _ => "malformed_credential",
        }
    }
    fn status(&self) -> u16 {
        400
    }
}

/// A parsed L402 credential, borrowing its macaroons from the header.
///
/// ```
/// use pay402_core::l402::Credential;
/// let v = format!("LSAT  AgEB,AgEC:{}", "AB".repeat(32));
/// let c = Credential::parse(&v).unwrap();
/// assert_eq!(c.macaroons().collect::<Vec<_>>(), ["AgEB", "AgEC"]);
/// assert_eq!(c.to_header_value(), format!("L402 AgEB,AgEC:{}", "ab".repeat(32)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    scheme: Scheme,
    macaroons: &'a str,
    count: usize,
    first_len: usize,
    preimage: Preimage,
}

/// Whether `b` may appear in a base64 macaroon (either alphabet, padding).
pub(crate) fn is_b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')
}

impl<'a> Credential<'a> {
    /// Builds a credential for sending.
    ///
    /// ```
    /// use pay402_core::l402::Credential;
    /// use pay402_core::lightning::Preimage;
    /// let c = Credential::new("AgEB", Preimage::from_bytes([0; 32]));
    /// assert!(c.to_header_value().starts_with("L402 AgEB:0000"));
    /// ```
    pub fn new(macaroon_b64: &'a str, preimage: Preimage) -> Credential<'a> {
        Credential {
            scheme: Scheme::L402,
            macaroons: macaroon_b64,
            count: 1,
            first_len: macaroon_b64.len(),
            preimage,
        }
    }

    /// Parses one `Authorization` value.
    ///
    /// ```
    /// use pay402_core::l402::{Credential, CredentialError};
    /// assert_eq!(Credential::parse("Bearer x").unwrap_err(), CredentialError::NotL402);
    /// assert_eq!(Credential::parse("L402 :00").unwrap_err(), CredentialError::BadPreimage);
    /// ```
    pub fn parse(value: &'a str) -> Result<Credential<'a>, CredentialError> {
        if value.len() > MAX_HEADER_VALUE {
            return Err(CredentialError::TooLong);
        }
        let (scheme, rest) =
            auth_header::split_credentials(value).ok_or(CredentialError::NotL402)?;
        let scheme = Scheme::from_name(scheme).ok_or(CredentialError::NotL402)?;
        // The preimage is 64 hex digits, so the colon is almost always 65
        // bytes from the end; look there before searching.
        let split = match rest.len().checked_sub(65) {
            Some(i) if rest.as_bytes()[i] == b':' => Some((&rest[..i], &rest[i + 1..])),
            _ => rest.rsplit_once(':'),
        };
        let (macaroons, preimage) = split.ok_or(CredentialError::MissingPreimage)?;
        let preimage = Preimage::from_hex(preimage).map_err(|_| CredentialError::BadPreimage)?;
        // One SIMD scan for commas; a single macaroon (the usual case) has none.
        let bytes = macaroons.as_bytes();
        let mut count = 0;
        let mut first_len = bytes.len();
        let mut start = 0;
        for comma in memchr::memchr_iter(b',', bytes).chain(std::iter::once(bytes.len())) {
            if comma == start {
                return Err(CredentialError::EmptyMacaroon);
            }
            if count == 0 {
                first_len = comma;
            }
            count += 1;
            if count > MAX_MACAROONS {
                return Err(CredentialError::TooManyMacaroons);
            }
            start = comma + 1;
        }
        Ok(Credential {
            scheme,
            macaroons,
            count,
            first_len,
            preimage,
        })
    }

    /// Finds the one L402 credential among all `Authorization` values.
    ///
    /// Values of other schemes are ignored; `Ok(None)` means no L402 credential.
    /// Two or more L402 credentials are [`CredentialError::Multiple`].
    ///
    /// ```
    /// use pay402_core::l402::{Credential, CredentialError};
    /// let p = "00".repeat(32);
    /// let one = format!("L402 AgE:{p}");
    /// assert!(Credential::from_headers([b"Bearer t".as_slice(), one.as_bytes()]).unwrap().is_some());
    /// let two = [one.as_bytes(), one.as_bytes()];
    /// assert_eq!(Credential::from_headers(two).unwrap_err(), CredentialError::Multiple);
    /// ```
    pub fn from_headers<I>(values: I) -> Result<Option<Credential<'a>>, CredentialError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut found = None;
        for v in values {
            // Look at the scheme first: other schemes (a huge Bearer token,
            // a non-UTF-8 cookie-like value) are none of our business.
            let scheme_end = v
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(v.len());
            let scheme = &v[..scheme_end];
            if !scheme.eq_ignore_ascii_case(b"L402") && !scheme.eq_ignore_ascii_case(b"LSAT") {
                continue;
            }
            if v.len() > MAX_HEADER_VALUE {
                return Err(CredentialError::TooLong);
            }
            let s = std::str::from_utf8(v).map_err(|_| CredentialError::NotUtf8)?;
            if found.is_some() {
                return Err(CredentialError::Multiple);
            }
            found = Some(Credential::parse(s)?);
        }
        Ok(found)
    }

    /// The scheme it arrived under.
    ///
    /// ```
    /// let v = format!("lsat a:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert_eq!(c.scheme(), pay402_core::l402::Scheme::Lsat);
    /// ```
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The macaroons (base64 as sent), in order.
    ///
    /// ```
    /// let v = format!("L402 a,b:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert_eq!(c.macaroons().count(), 2);
    /// ```
    pub fn macaroons(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.macaroons.split(',')
    }

    /// The first macaroon.
    ///
    /// ```
    /// let v = format!("L402 a,b:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert_eq!(c.first_macaroon(), "a");
    /// ```
    pub fn first_macaroon(&self) -> &'a str {
        self.macaroons
            .get(..self.first_len)
            .unwrap_or(self.macaroons)
    }

    /// How many macaroons were sent.
    ///
    /// ```
    /// let v = format!("L402 a:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert_eq!(c.macaroon_count(), 1);
    /// ```
    pub fn macaroon_count(&self) -> usize {
        self.count
    }

    /// The preimage.
    ///
    /// ```
    /// let v = format!("L402 a:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert!(c.preimage().is_all_zero());
    /// ```
    pub fn preimage(&self) -> &Preimage {
        &self.preimage
    }

    /// The canonical header value: `L402 <macaroons>:<lowercase hex>`.
    ///
    /// ```
    /// let v = format!("l402   a:{}", "F".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert_eq!(c.to_header_value(), format!("L402 a:{}", "f".repeat(64)));
    /// ```
    pub fn to_header_value(&self) -> String {
        let mut s = String::with_capacity(6 + self.macaroons.len() + 65);
        s.push_str("L402 ");
        s.push_str(self.macaroons);
        s.push(':');
        s.push_str(&self.preimage.to_hex());
        s
    }

    /// The same credential under the legacy `LSAT` scheme (for old servers).
    ///
    /// ```
    /// let v = format!("L402 a:{}", "0".repeat(64));
    /// let c = pay402_core::l402::Credential::parse(&v).unwrap();
    /// assert!(c.to_lsat_header_value().starts_with("LSAT a:"));
    /// ```
    pub fn to_lsat_header_value(&self) -> String {
        let mut s = self.to_header_value();
        s.replace_range(0..4, "LSAT");
        s
    }
}
