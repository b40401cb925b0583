//! The `digest` auth-param: a SHA-256 digest of the request body.
//!
//! Peers emit `sha-256=<standard base64, padded>` (mppx, pympp, mpp-rs); the
//! core draft says RFC 9530, `sha-256=:<base64>:`. pay402 emits the bare form
//! and accepts both on verify (as mpp-rs 0.18), padding optional, the
//! algorithm name in any case. The comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// The digest string pay402 puts in a challenge: `sha-256=<b64 padded>`.
///
/// ```
/// use pay402_core::mpp::digest::compute;
/// assert_eq!(compute(b""), "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
/// ```
pub fn compute(body: &[u8]) -> String {
    let mut s = String::from("sha-256=");
    STANDARD.encode_string(Sha256::digest(body), &mut s);
    s
}

/// Whether `digest` (either form) is the SHA-256 digest of `body`.
///
/// ```
/// use pay402_core::mpp::digest::verify;
/// assert!(verify("sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", b""));
/// assert!(verify("SHA-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", b""));
/// assert!(verify("sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", b""));
/// assert!(!verify("sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", b"x"));
/// assert!(!verify("sha-512=abc", b""));
/// ```
pub fn verify(digest: &str, body: &[u8]) -> bool {
    let Some((alg, value)) = digest.split_once('=') else {
        return false;
    };
    if !alg.trim().eq_ignore_ascii_case("sha-256") {
        return false;
    }
    let value = value.trim();
    let value = match value.strip_prefix(':') {
        Some(v) => match v.strip_suffix(':') {
            Some(v) => v,
            None => return false,
        },
        None => value,
    };
    let Ok(bytes) = crate::b64::decode_any(value, 32) else {
        return false;
    };
    let Ok(got): Result<[u8; 32], _> = bytes.try_into() else {
        return false;
    };
    crate::ct::eq32(&got, &Sha256::digest(body).into())
}
