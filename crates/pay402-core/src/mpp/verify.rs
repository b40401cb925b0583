//! The method-independent steps of server verification, in order:
//!
//! | # | step | error |
//! |---|---|---|
//! | 1 | decode the credential ([`Credential::decode`]) | `malformed_credential` |
//! | 2 | the echoed id is this server's HMAC of the echoed parameters (any honoured secret) | `challenge_not_issued` |
//! | 3 | route pinning: `realm`, `method`, `intent`, `opaque` (ignoring pay402's nonce), the body `digest`; then the method pins its request fields | `challenge_route_mismatch` |
//! | 4 | `expires` present, RFC 3339, in the future | `challenge_missing_expires`, `challenge_invalid_expires`, `challenge_expired` |
//! | 5 | the payload fits the method's schema | `invalid_payload` |
//! | 6 | method verification (preimage, signature, …) | per method |
//! | 7 | atomic consume of the replay key (the server's store) | `credential_replayed` |
//!
//! Steps 3 (request fields) to 6 are the methods' ([`super::methods`]); step
//! 7 is the store's, after any slow backend call.

use std::collections::BTreeMap;

use super::b64url;
use super::binding::ChallengeKeys;
use super::challenge::{Challenge, MAX_OPAQUE_LEN, MAX_REQUEST_LEN};
use super::digest;
use super::error::VerifyError;
use super::jcs;
use super::rfc3339;
use crate::time::UnixTime;

/// The `opaque` key under which pay402 puts a per-challenge nonce (so two
/// otherwise identical offers get different ids); ignored when pinning.
pub const NONCE_KEY: &str = "_pay402_nonce";

/// What a route expects of an echoed challenge.
///
/// ```
/// use pay402_core::mpp::{Challenge, verify::{Route, check_route}};
/// let route = Route::new("api.example.com", "lightning", "charge");
/// let c = Challenge::new("i", "api.example.com", "lightning", "session", "e30");
/// assert!(check_route(&c, &route).is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Route<'r> {
    /// The realm this server issues.
    pub realm: &'r str,
    /// The method served.
    pub method: &'r str,
    /// The intent served.
    pub intent: &'r str,
    /// The server data expected in `opaque` (flat string map), if any.
    pub meta: Option<&'r BTreeMap<String, String>>,
    /// The request body, when the challenge must bind it with `digest`.
    pub body: Option<&'r [u8]>,
}

impl<'r> Route<'r> {
    /// A route with no `opaque` data and no body digest.
    ///
    /// ```
    /// let r = pay402_core::mpp::verify::Route::new("r", "lightning", "charge");
    /// assert!(r.meta.is_none());
    /// ```
    pub fn new(realm: &'r str, method: &'r str, intent: &'r str) -> Route<'r> {
        Route {
            realm,
            method,
            intent,
            meta: None,
            body: None,
        }
    }
}

/// Step 2: the id is the HMAC of the bound parameters under an honoured secret.
///
/// ```
/// use pay402_core::mpp::{Challenge, ChallengeKey, ChallengeKeys, VerifyError, verify::check_binding};
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[3; 32]).unwrap());
/// let mut c = Challenge::new("", "r", "lightning", "charge", "e30");
/// keys.bind(&mut c);
/// assert!(check_binding(&c, &keys).is_ok());
/// c.request = "e31".into();
/// assert_eq!(check_binding(&c, &keys), Err(VerifyError::ChallengeNotIssued));
/// ```
pub fn check_binding(challenge: &Challenge<'_>, keys: &ChallengeKeys) -> Result<(), VerifyError> {
    keys.verify(challenge)
        .map(|_| ())
        .ok_or(VerifyError::ChallengeNotIssued)
}

/// Decodes an `opaque` value: strict base64url of a flat string→string object.
///
/// ```
/// use pay402_core::mpp::verify::decode_opaque;
/// let m = decode_opaque("eyJwaSI6InBpXzNhYmMxMjNYWVoifQ").unwrap();
/// assert_eq!(m["pi"], "pi_3abc123XYZ");
/// assert!(decode_opaque("eyJhIjoxfQ").is_none()); // {"a":1}: not a string value
/// ```
pub fn decode_opaque(opaque: &str) -> Option<BTreeMap<String, String>> {
    let bytes = b64url::decode_strict(opaque, MAX_OPAQUE_LEN).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Encodes server data (and an optional nonce under [`NONCE_KEY`]) as an
/// `opaque` value: base64url of JCS.
///
/// ```
/// use std::collections::BTreeMap;
/// use pay402_core::mpp::verify::encode_opaque;
/// let mut m = BTreeMap::new();
/// m.insert("pi".to_owned(), "pi_3abc123XYZ".to_owned());
/// assert_eq!(encode_opaque(&m, None), "eyJwaSI6InBpXzNhYmMxMjNYWVoifQ");
/// assert_ne!(encode_opaque(&m, Some(&[1; 16])), encode_opaque(&m, Some(&[2; 16])));
/// ```
pub fn encode_opaque(meta: &BTreeMap<String, String>, nonce: Option<&[u8; 16]>) -> String {
    let mut m = meta.clone();
    if let Some(n) = nonce {
        m.insert(NONCE_KEY.to_owned(), hex::encode(n));
    }
    // A map of strings always canonicalizes.
    jcs::encode_param(&m).unwrap_or_default()
}

/// Step 3 (the method-independent part): realm, method, intent, `opaque`
/// and the body digest.
///
/// ```
/// use pay402_core::mpp::{Challenge, VerifyError, verify::{Route, check_route}};
/// let c = Challenge::new("i", "r", "lightning", "charge", "e30");
/// assert!(check_route(&c, &Route::new("r", "lightning", "charge")).is_ok());
/// assert_eq!(check_route(&c, &Route::new("s", "lightning", "charge")), Err(VerifyError::RouteMismatch("realm")));
/// ```
pub fn check_route(challenge: &Challenge<'_>, route: &Route<'_>) -> Result<(), VerifyError> {
    if challenge.realm != route.realm {
        return Err(VerifyError::RouteMismatch("realm"));
    }
    if challenge.method != route.method {
        return Err(VerifyError::RouteMismatch("method"));
    }
    if challenge.intent != route.intent {
        return Err(VerifyError::RouteMismatch("intent"));
    }
    match challenge.opaque.as_deref() {
        None => {
            if route.meta.is_some_and(|m| !m.is_empty()) {
                return Err(VerifyError::RouteMismatch("opaque"));
            }
        }
        Some(o) => {
            let mut got = decode_opaque(o).ok_or(VerifyError::RouteMismatch("opaque"))?;
            got.remove(NONCE_KEY);
            let empty = BTreeMap::new();
            if &got != route.meta.unwrap_or(&empty) {
                return Err(VerifyError::RouteMismatch("opaque"));
            }
        }
    }
    if let Some(body) = route.body {
        match challenge.digest.as_deref() {
            Some(d) if digest::verify(d, body) => {}
            _ => return Err(VerifyError::RouteMismatch("digest")),
        }
    }
    Ok(())
}

/// Step 4: `expires` present, valid, and after `now`. Returns it.
///
/// ```
/// use pay402_core::mpp::{Challenge, VerifyError, verify::check_expires};
/// use pay402_core::time::UnixTime;
/// let mut c = Challenge::new("i", "r", "m", "c", "e30");
/// assert_eq!(check_expires(&c, UnixTime(0)), Err(VerifyError::MissingExpires));
/// c.expires = Some("2026-01-01T00:15:00Z".into());
/// assert_eq!(check_expires(&c, UnixTime(1_767_226_499)), Ok(UnixTime(1_767_226_500)));
/// assert_eq!(check_expires(&c, UnixTime(1_767_226_500)), Err(VerifyError::Expired));
/// ```
pub fn check_expires(challenge: &Challenge<'_>, now: UnixTime) -> Result<UnixTime, VerifyError> {
    let e = challenge
        .expires
        .as_deref()
        .ok_or(VerifyError::MissingExpires)?;
    let at = rfc3339::parse(e).map_err(|_| VerifyError::InvalidExpires)?;
    if now >= at {
        return Err(VerifyError::Expired);
    }
    Ok(at)
}

/// Decodes the echoed `request` (strict base64url, at most
/// [`MAX_REQUEST_LEN`]) into `buf` and deserializes it as `T`.
///
/// ```
/// use pay402_core::mpp::{Challenge, verify::decode_request};
/// let c = Challenge::new("i", "r", "m", "c", "eyJhbW91bnQiOiIxMDAifQ");
/// let mut buf = Vec::new();
/// let v: serde_json::Value = decode_request(&c, &mut buf).unwrap();
/// assert_eq!(v["amount"], "100");
/// ```
pub fn decode_request<'b, T: serde::Deserialize<'b>>(
    challenge: &Challenge<'_>,
    buf: &'b mut Vec<u8>,
) -> Result<T, VerifyError> {
    b64url::decode_strict_into(&challenge.request, MAX_REQUEST_LEN, buf)
        .map_err(|_| VerifyError::InvalidRequest("not base64url"))?;
    let buf: &'b Vec<u8> = buf;
    serde_json::from_slice(buf)
        .map_err(|_| VerifyError::InvalidRequest("not this method's request"))
}
