//! The credential: `Authorization: Payment <base64url(JSON)>`.
//!
//! ```json
//! {"challenge": {<every auth-param of the challenge, as strings>},
//!  "payload": {<method-specific proof>},
//!  "source": "<payer DID, optional>"}
//! ```
//!
//! Reading is strict where the server reads: the token is decoded with the
//! strict base64url rules, the JSON must be one object with `challenge` (each
//! member a string) and `payload` (an object); key order is free, unknown
//! members are ignored, a repeated member is refused. Strings borrow from the
//! decode buffer. `Authorization` may carry other schemes' credentials in a
//! comma-separated list; the `Payment` one is picked out, and two `Payment`
//! credentials in one request are an error (400), never "first wins".

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::b64url;
use super::challenge::{Challenge, ChallengeError, SCHEME};
use crate::problem::Reason;

/// Longest credential accepted: decoded JSON bytes (Aperture, pympp: 64 KiB).
pub const MAX_CREDENTIAL_LEN: usize = 64 * 1024;
/// Longest `Authorization` value read (the base64url of [`MAX_CREDENTIAL_LEN`] and change).
pub const MAX_AUTHORIZATION_LEN: usize = MAX_CREDENTIAL_LEN / 3 * 4 + 1024;

/// Why an `Authorization` value could not be read as a Payment credential.
///
/// ```
/// use pay402_core::mpp::{Credential, CredentialError};
/// let mut buf = Vec::new();
/// assert_eq!(Credential::decode("AB", &mut buf).unwrap_err(), CredentialError::NotBase64url);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Longer than [`MAX_AUTHORIZATION_LEN`] or [`MAX_CREDENTIAL_LEN`].
    #[error("Payment credential too large")]
    TooLong,
    /// The header value is not UTF-8.
    #[error("Authorization header is not valid UTF-8")]
    NotUtf8,
    /// Several `Payment` credentials in one request.
    #[error("several Payment credentials in one request")]
    Multiple,
    /// `Payment` with no token.
    #[error("Payment credential has no token")]
    EmptyToken,
    /// The token is not strict base64url.
    #[error("Payment credential is not base64url")]
    NotBase64url,
    /// The decoded token is not the credential JSON object.
    #[error("Payment credential is not valid JSON: {0}")]
    InvalidJson(String),
    /// `payload` is not a JSON object.
    #[error("Payment credential payload is not an object")]
    PayloadNotObject,
    /// The echoed challenge breaks the challenge grammar.
    #[error("Payment credential echoes an invalid challenge: {0}")]
    InvalidChallenge(ChallengeError),
}

impl Reason for CredentialError {
    fn reason(&self) -> &'static str {
        match self {
            CredentialError::TooLong => "credential_too_large",
            CredentialError::Multiple => "multiple_credentials",
            CredentialError::NotUtf8
            | CredentialError::EmptyToken
            | CredentialError::NotBase64url
            | CredentialError::InvalidJson(_)
            | CredentialError::PayloadNotObject
            | CredentialError::InvalidChallenge(_) => "malformed_credential",
        }
    }
    fn status(&self) -> u16 {
        match self {
            CredentialError::Multiple => 400,
            _ => 402,
        }
    }
}

/// Splits an `Authorization` value into list elements at commas outside
/// quoted strings.
///
/// The scan jumps from one `,` or `"` to the next (`memchr2`), so a long
/// token (a Payment credential is about 1.5 KB of base64url, which has
/// neither) is crossed in a few vector steps, and nothing is allocated.
fn elements(value: &str) -> impl Iterator<Item = &str> {
    let b = value.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut i = start;
        let mut in_quotes = false;
        let end = loop {
            let next = if in_quotes {
                memchr::memchr2(b'"', b'\\', &b[i..])
            } else {
                memchr::memchr2(b',', b'"', &b[i..])
            };
            let Some(off) = next else {
                break None;
            };
            let j = i + off;
            match b[j] {
                // An escape inside quotes: skip the escaped byte.
                b'\\' => i = j + 2,
                b'"' => {
                    in_quotes = !in_quotes;
                    i = j + 1;
                }
                _ => break Some(j),
            }
            if i >= b.len() {
                break None;
            }
        };
        let (s, e) = match end {
            Some(j) => {
                let s = start;
                start = j + 1;
                (s, j)
            }
            None => {
                done = true;
                (start, b.len())
            }
        };
        // `s` and `e` sit next to ASCII bytes (`,`) or at the ends.
        Some(value.get(s..e).unwrap_or("").trim_matches([' ', '\t']))
    })
}

/// The `Payment` token of one `Authorization` value, if it has one.
fn token_in(value: &str) -> Result<Option<&str>, CredentialError> {
    let mut found = None;
    for el in elements(value) {
        let Some((scheme, rest)) = crate::auth_header::split_credentials(el) else {
            continue;
        };
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            continue;
        }
        if found.is_some() {
            return Err(CredentialError::Multiple);
        }
        found = Some(rest);
    }
    Ok(found)
}

/// Finds the one `Payment` token among every value of the credential header
/// (`Authorization`, or the field the challenge named). `Ok(None)` when no
/// value carries a `Payment` credential (the request is simply unpaid).
///
/// ```
/// use pay402_core::mpp::credential::{find_token, CredentialError};
/// assert_eq!(find_token([b"Bearer x, Payment eyJ9".as_slice()]).unwrap(), Some("eyJ9"));
/// assert_eq!(find_token([b"Basic dTpw".as_slice()]).unwrap(), None);
/// let two = [b"Payment e30".as_slice(), b"Payment e30".as_slice()];
/// assert_eq!(find_token(two).unwrap_err(), CredentialError::Multiple);
/// ```
pub fn find_token<'h, I>(values: I) -> Result<Option<&'h str>, CredentialError>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    let mut found = None;
    for v in values {
        if v.len() > MAX_AUTHORIZATION_LEN {
            return Err(CredentialError::TooLong);
        }
        let s = std::str::from_utf8(v).map_err(|_| CredentialError::NotUtf8)?;
        if let Some(t) = token_in(s)? {
            if found.is_some() {
                return Err(CredentialError::Multiple);
            }
            found = Some(t);
        }
    }
    Ok(found)
}

/// A decoded credential, borrowing from the caller's decode buffer.
///
/// ```
/// use pay402_core::mpp::{Challenge, Credential};
/// let challenge = Challenge::new("id1", "api.example.com", "lightning", "charge", "e30");
/// let payload = serde_json::json!({"preimage": "11".repeat(32)});
/// let header = Credential::encode(&challenge, &payload, None).unwrap();
/// let token = header.strip_prefix("Payment ").unwrap();
/// let mut buf = Vec::new();
/// let cred = Credential::decode(token, &mut buf).unwrap();
/// assert_eq!(cred.challenge, challenge);
/// assert_eq!(cred.payload.get(), format!(r#"{{"preimage":"{}"}}"#, "11".repeat(32)));
/// // The payload is the proof (a preimage, a signature): `Debug` never prints it.
/// assert!(!format!("{cred:?}").contains("1111"));
/// ```
#[derive(Clone, Deserialize)]
pub struct Credential<'a> {
    /// The echoed challenge.
    #[serde(borrow)]
    pub challenge: Challenge<'a>,
    /// The method-specific proof, as raw JSON (an object).
    #[serde(borrow)]
    pub payload: &'a RawValue,
    /// The payer's identifier (a DID), if given.
    #[serde(borrow, default)]
    pub source: Option<Cow<'a, str>>,
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("challenge", &self.challenge)
            .field("payload", &"..")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Serialize)]
struct WireOut<'c, P: Serialize + ?Sized> {
    challenge: &'c Challenge<'c>,
    payload: &'c P,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'c str>,
}

impl<'a> Credential<'a> {
    /// Decodes a token (the part after `Payment `) into `buf` and reads it.
    ///
    /// See [`Credential`] for a round trip.
    ///
    /// ```
    /// use pay402_core::mpp::{Credential, CredentialError};
    /// let mut buf = Vec::new();
    /// assert_eq!(Credential::decode("", &mut buf).unwrap_err(), CredentialError::EmptyToken);
    /// assert!(matches!(Credential::decode("e29vcHN9", &mut buf), Err(CredentialError::InvalidJson(_))));
    /// ```
    pub fn decode(token: &str, buf: &'a mut Vec<u8>) -> Result<Credential<'a>, CredentialError> {
        if token.is_empty() {
            return Err(CredentialError::EmptyToken);
        }
        if token.len() > MAX_AUTHORIZATION_LEN {
            return Err(CredentialError::TooLong);
        }
        b64url::decode_strict_into(token, MAX_CREDENTIAL_LEN, buf).map_err(|e| match e {
            crate::b64::Base64Error::TooLong => CredentialError::TooLong,
            _ => CredentialError::NotBase64url,
        })?;
        let buf: &'a Vec<u8> = buf;
        Credential::from_json(buf.as_slice())
    }

    /// Reads the credential JSON itself.
    ///
    /// ```
    /// use pay402_core::mpp::{Credential, CredentialError};
    /// let j = br#"{"challenge":{"id":"i","realm":"r","method":"lightning","intent":"charge","request":"cQ"}}"#;
    /// assert!(matches!(Credential::from_json(j), Err(CredentialError::InvalidJson(_))));
    /// ```
    pub fn from_json(json: &'a [u8]) -> Result<Credential<'a>, CredentialError> {
        if json.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialError::TooLong);
        }
        let cred: Credential<'a> = serde_json::from_slice(json)
            .map_err(|e| CredentialError::InvalidJson(e.to_string()))?;
        if !cred.payload.get().starts_with('{') {
            return Err(CredentialError::PayloadNotObject);
        }
        cred.challenge
            .check()
            .map_err(CredentialError::InvalidChallenge)?;
        Ok(cred)
    }

    /// Builds the `Authorization` value for `challenge` (echoed unchanged)
    /// and `payload`: `Payment <base64url(JSON)>`.
    ///
    /// See [`Credential`].
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, Credential};
    /// let c = Challenge::new("i", "r", "lightning", "charge", "e30");
    /// let v = Credential::encode(&c, &serde_json::json!({}), Some("did:key:z6Mk")).unwrap();
    /// assert!(v.starts_with("Payment eyJ"));
    /// ```
    pub fn encode<P: Serialize + ?Sized>(
        challenge: &Challenge<'_>,
        payload: &P,
        source: Option<&str>,
    ) -> Result<String, serde_json::Error> {
        let json = serde_json::to_vec(&WireOut {
            challenge,
            payload,
            source,
        })?;
        let mut out = String::with_capacity(8 + json.len() * 4 / 3 + 4);
        out.push_str(SCHEME);
        out.push(' ');
        b64url::encode_into(&json, &mut out);
        Ok(out)
    }

    /// Deserializes the payload into a method's payload type.
    ///
    /// ```
    /// use pay402_core::mpp::Credential;
    /// let j = br#"{"challenge":{"id":"i","realm":"r","method":"m","intent":"c","request":"e30"},"payload":{"n":3}}"#;
    /// let cred = Credential::from_json(j).unwrap();
    /// #[derive(serde::Deserialize)] struct P { n: u8 }
    /// assert_eq!(cred.payload_as::<P>().unwrap().n, 3);
    /// ```
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }
}

#[cfg(test)]
mod tests {
    use super::elements;

    /// The byte-at-a-time splitter `elements` replaced: the reference.
    fn reference(value: &str) -> Vec<&str> {
        let b = value.as_bytes();
        let (mut start, mut in_quotes, mut escaped) = (0, false, false);
        let mut out = Vec::new();
        for (i, &c) in b.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_quotes = !in_quotes;
            } else if c == b',' && !in_quotes {
                out.push(value[start..i].trim_matches([' ', '\t']));
                start = i + 1;
            }
        }
        out.push(value[start..].trim_matches([' ', '\t']));
        out
    }

    #[test]
    fn elements_split_as_the_reference_does() {
        for v in [
            "",
            ",",
            ",,",
            "a,",
            ",a",
            "Payment eyJ9",
            "Bearer x, Payment eyJ9",
            r#"Basic a="b,c", Payment t"#,
            r#"x="a\"b,c",y"#,
            r#"x="a\\",b"#,
            r#"x="unterminated, y"#,
            r#"x="ends in \"#,
            r#"x="\"#,
            "\\,a",
            r#""","",""#,
            " a ,\tb\t, c",
            "é,ü\"ß,\"",
        ] {
            assert_eq!(elements(v).collect::<Vec<_>>(), reference(v), "{v:?}");
        }
    }
}
