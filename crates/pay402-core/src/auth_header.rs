//! RFC 9110 authentication header syntax (§11): challenge lists and credentials.
//!
//! This is the scheme-agnostic layer. It splits a `WWW-Authenticate` value
//! (possibly several challenges folded into one line, possibly several header
//! lines) into challenges, each with a scheme and either a token68 or a list of
//! `name=value` parameters. Values borrow from the input unless a quoted string
//! contains escapes. Every length and count is bounded.

use std::borrow::Cow;

/// Longest header value accepted, in bytes.
pub const MAX_HEADER_VALUE: usize = 16 * 1024;
/// Most challenges accepted across all values of one header.
pub const MAX_CHALLENGES: usize = 32;
/// Most parameters accepted in one challenge.
pub const MAX_PARAMS: usize = 32;

/// Why an authentication header could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderSyntaxError {
    /// The value is longer than [`MAX_HEADER_VALUE`].
    #[error("header value longer than {MAX_HEADER_VALUE} bytes")]
    TooLong,
    /// The value is not UTF-8 (headers are visible ASCII).
    #[error("header value is not valid UTF-8")]
    NotUtf8,
    /// More than [`MAX_CHALLENGES`] challenges or [`MAX_PARAMS`] parameters.
    #[error("too many challenges or parameters")]
    TooMany,
    /// A syntax error at the given byte offset.
    #[error("syntax error at byte {0}")]
    Syntax(usize),
    /// A quoted string has no closing quote.
    #[error("unterminated quoted string")]
    Unterminated,
}

/// One `name=value` parameter of a challenge.
///
/// ```
/// use pay402_core::auth_header::parse_challenges;
/// let c = parse_challenges("Basic realm=\"a\\\"b\"").unwrap();
/// assert_eq!(c[0].params[0].name, "realm");
/// assert_eq!(c[0].params[0].value, "a\"b");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthParam<'a> {
    /// The parameter name as written (compare case-insensitively).
    pub name: &'a str,
    /// The value, unquoted and unescaped.
    pub value: Cow<'a, str>,
    /// The value as written: between the quotes, escapes kept (the same as
    /// `value` for a bare token). For readers that must apply a non-standard
    /// escape rule of their own (MPP's `\uXXXX` in `description`).
    pub raw: &'a str,
}

/// One challenge: a scheme and its token68 or parameters.
///
/// ```
/// use pay402_core::auth_header::parse_challenges;
/// let c = parse_challenges("Negotiate abc==, L402 macaroon=\"m\", invoice=\"i\"").unwrap();
/// assert_eq!(c.len(), 2);
/// assert_eq!(c[0].token68, Some("abc=="));
/// assert_eq!(c[1].param("INVOICE"), Some("i"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthChallenge<'a> {
    /// The auth scheme as written (compare case-insensitively).
    pub scheme: &'a str,
    /// The token68 form, if the challenge used it.
    pub token68: Option<&'a str>,
    /// The parameters, in order (duplicates are kept for the caller to judge).
    pub params: Vec<AuthParam<'a>>,
}

impl<'a> AuthChallenge<'a> {
    /// The first parameter with this name (case-insensitive).
    ///
    /// ```
    /// let c = pay402_core::auth_header::parse_challenges("X a=1").unwrap();
    /// assert_eq!(c[0].param("A"), Some("1"));
    /// assert_eq!(c[0].param("b"), None);
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_ref())
    }

    /// Whether any parameter name occurs twice (RFC 9110 forbids it).
    ///
    /// ```
    /// let c = pay402_core::auth_header::parse_challenges("X a=1, A=2").unwrap();
    /// assert!(c[0].has_duplicate_params());
    /// ```
    pub fn has_duplicate_params(&self) -> bool {
        self.params.iter().enumerate().any(|(i, p)| {
            self.params[..i]
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(p.name))
        })
    }
}

#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }
    /// Whether a parameter (`token BWS "="`) starts here; does not move.
    fn at_param(&self) -> bool {
        let mut j = self.i;
        let start = j;
        while self.b.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while matches!(self.b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if self.b.get(j) != Some(&b'=') {
            return false;
        }
        // `token=` followed by another `=` or by nothing is a token68 tail.
        j += 1;
        while matches!(self.b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        !matches!(self.b.get(j), None | Some(b'=' | b','))
    }
    fn quoted(&mut self) -> Result<(Cow<'a, str>, &'a str), HeaderSyntaxError> {
        // at opening quote
        self.i += 1;
        let start = self.i;
        // Fast path: an ASCII value without escapes (every macaroon and
        // invoice): find the closing quote with one SIMD scan.
        let rest = &self.b[start..];
        match memchr::memchr2(b'"', b'\\', rest) {
            None => return Err(HeaderSyntaxError::Unterminated),
            Some(end) if rest[end] == b'"' => {
                let value = &rest[..end];
                if value
                    .iter()
                    .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
                {
                    self.i = start + end + 1;
                    return Ok((
                        Cow::Borrowed(&self.s[start..start + end]),
                        &self.s[start..start + end],
                    ));
                }
            }
            Some(_) => {}
        }
        let mut owned: Option<String> = None;
        loop {
            match self.peek() {
                None => return Err(HeaderSyntaxError::Unterminated),
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    let raw = &self.s[start..end];
                    return Ok(match owned {
                        Some(o) => (Cow::Owned(o), raw),
                        None => (Cow::Borrowed(raw), raw),
                    });
                }
                Some(b'\\') => {
                    let o = owned.get_or_insert_with(|| self.s[start..self.i].to_owned());
                    self.i += 1;
                    let c = self.s[self.i..]
                        .chars()
                        .next()
                        .ok_or(HeaderSyntaxError::Unterminated)?;
                    if c.is_control() && c != '\t' {
                        return Err(HeaderSyntaxError::Syntax(self.i));
                    }
                    o.push(c);
                    self.i += c.len_utf8();
                }
                Some(_) => {
                    let c = self.s[self.i..]
                        .chars()
                        .next()
                        .ok_or(HeaderSyntaxError::Syntax(self.i))?;
                    if c.is_control() && c != '\t' {
                        return Err(HeaderSyntaxError::Syntax(self.i));
                    }
                    if let Some(o) = owned.as_mut() {
                        o.push(c);
                    }
                    self.i += c.len_utf8();
                }
            }
        }
    }
    /// An unquoted parameter value: a token, leniently extended with the
    /// base64 characters `/` and `=` that real servers leave unquoted.
    fn bare_value(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| is_tchar(b) || b == b'/' || b == b'=')
        {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }
}

/// Parses one header value as an RFC 9110 `#challenge` list.
///
/// Empty list elements are allowed. As lsat-js does, challenges separated by
/// whitespace instead of a comma are accepted too.
///
/// ```
/// use pay402_core::auth_header::parse_challenges;
/// let v = "LSAT macaroon=\"a\", invoice=\"b\", L402 macaroon=\"a\", invoice=\"b\"";
/// let c = parse_challenges(v).unwrap();
/// assert_eq!(c.iter().map(|c| c.scheme).collect::<Vec<_>>(), ["LSAT", "L402"]);
/// ```
pub fn parse_challenges(value: &str) -> Result<Vec<AuthChallenge<'_>>, HeaderSyntaxError> {
    let mut out = Vec::new();
    parse_challenges_into(value, &mut out)?;
    Ok(out)
}

/// Like [`parse_challenges`], appending to `out` (used to merge several header lines).
///
/// ```
/// let mut all = Vec::new();
/// pay402_core::auth_header::parse_challenges_into("A x=1", &mut all).unwrap();
/// pay402_core::auth_header::parse_challenges_into("B y=2", &mut all).unwrap();
/// assert_eq!(all.len(), 2);
/// ```
pub fn parse_challenges_into<'a>(
    value: &'a str,
    out: &mut Vec<AuthChallenge<'a>>,
) -> Result<(), HeaderSyntaxError> {
    parse_challenges_bounded(value, MAX_HEADER_VALUE, out)
}

/// Like [`parse_challenges_into`] with a caller-chosen length bound instead of
/// [`MAX_HEADER_VALUE`] (MPP challenges carry a `request` of up to 16 KiB, and
/// fetch-based peers join several challenges into one value). The challenge
/// and parameter counts stay bounded by [`MAX_CHALLENGES`] and [`MAX_PARAMS`].
///
/// ```
/// use pay402_core::auth_header::{parse_challenges_bounded, HeaderSyntaxError};
/// let mut out = Vec::new();
/// assert_eq!(parse_challenges_bounded("A x=1", 3, &mut out), Err(HeaderSyntaxError::TooLong));
/// parse_challenges_bounded("A x=1", 5, &mut out).unwrap();
/// assert_eq!(out[0].param("x"), Some("1"));
/// ```
pub fn parse_challenges_bounded<'a>(
    value: &'a str,
    max_len: usize,
    out: &mut Vec<AuthChallenge<'a>>,
) -> Result<(), HeaderSyntaxError> {
    if value.len() > max_len {
        return Err(HeaderSyntaxError::TooLong);
    }
    let mut c = Cursor {
        s: value,
        b: value.as_bytes(),
        i: 0,
    };
    loop {
        // Skip OWS and empty list elements.
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.i += 1;
        }
        if c.peek().is_none() {
            return Ok(());
        }
        let scheme = c.token().ok_or(HeaderSyntaxError::Syntax(c.i))?;
        if out.len() >= MAX_CHALLENGES {
            return Err(HeaderSyntaxError::TooMany);
        }
        let mut ch = AuthChallenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        let spaces = c.skip_ws();
        match c.peek() {
            None | Some(b',') => {
                out.push(ch);
                continue;
            }
            Some(_) if spaces == 0 => return Err(HeaderSyntaxError::Syntax(c.i)),
            Some(_) => {}
        }
        if !c.at_param() {
            // token68
            let start = c.i;
            while c.peek().is_some_and(is_token68_char) {
                c.i += 1;
            }
            if c.i == start {
                return Err(HeaderSyntaxError::Syntax(c.i));
            }
            while c.peek() == Some(b'=') {
                c.i += 1;
            }
            ch.token68 = Some(&value[start..c.i]);
            out.push(ch);
            c.skip_ws();
            match c.peek() {
                None | Some(b',') => continue,
                Some(_) => return Err(HeaderSyntaxError::Syntax(c.i)),
            }
        }
        // auth-param list
        loop {
            let name = c.token().ok_or(HeaderSyntaxError::Syntax(c.i))?;
            c.skip_ws();
            if c.peek() != Some(b'=') {
                return Err(HeaderSyntaxError::Syntax(c.i));
            }
            c.i += 1;
            c.skip_ws();
            let (v, raw) = match c.peek() {
                Some(b'"') => c.quoted()?,
                Some(_) => {
                    let bare = c.bare_value().ok_or(HeaderSyntaxError::Syntax(c.i))?;
                    (Cow::Borrowed(bare), bare)
                }
                None => return Err(HeaderSyntaxError::Syntax(c.i)),
            };
            if ch.params.len() >= MAX_PARAMS {
                return Err(HeaderSyntaxError::TooMany);
            }
            ch.params.push(AuthParam {
                name,
                value: v,
                raw,
            });
            let ws = c.skip_ws();
            match c.peek() {
                None => break,
                Some(b',') => {
                    // Another parameter, or the next challenge?
                    while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
                        c.i += 1;
                    }
                    if c.peek().is_some() && c.at_param() {
                        continue;
                    }
                    break;
                }
                // lsat-js leniency: challenges separated by whitespace only.
                Some(b) if ws > 0 && is_tchar(b) && !c.at_param() => break,
                Some(_) => return Err(HeaderSyntaxError::Syntax(c.i)),
            }
        }
        out.push(ch);
    }
}

/// Splits an `Authorization` value into its scheme and the rest (after `1*SP`).
///
/// Returns `None` when there is no scheme token.
///
/// ```
/// use pay402_core::auth_header::split_credentials;
/// assert_eq!(split_credentials("L402   abc:def"), Some(("L402", "abc:def")));
/// assert_eq!(split_credentials("Bearer"), Some(("Bearer", "")));
/// assert_eq!(split_credentials(" x"), None);
/// ```
pub fn split_credentials(value: &str) -> Option<(&str, &str)> {
    let b = value.as_bytes();
    let end = b.iter().position(|&x| !is_tchar(x)).unwrap_or(b.len());
    if end == 0 {
        return None;
    }
    if end < b.len() && b[end] != b' ' && b[end] != b'\t' {
        return None;
    }
    let mut start = end;
    while start < b.len() && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    let mut stop = b.len();
    while stop > start && (b[stop - 1] == b' ' || b[stop - 1] == b'\t') {
        stop -= 1;
    }
    // Every index above sits next to an ASCII byte, so slicing cannot panic.
    Some((&value[..end], value.get(start..stop).unwrap_or("")))
}
