//! Base64 as L402 uses it: emit standard padded, accept all four flavours.

use base64::Engine;

/// Why a base64 value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// The value mixes the standard (`+/`) and URL-safe (`-_`) alphabets.
    #[error("base64 mixes the standard and URL-safe alphabets")]
    MixedAlphabet,
    /// The value is not valid base64.
    #[error("invalid base64")]
    Invalid,
    /// The value is empty.
    #[error("empty base64 value")]
    Empty,
    /// The decoded value would exceed the caller's limit.
    #[error("base64 value too long")]
    TooLong,
}

/// Decodes standard or URL-safe base64, padded or not, up to `max_decoded` bytes.
///
/// ```
/// use pay402_core::b64::decode_any;
/// assert_eq!(decode_any("aGk=", 16).unwrap(), b"hi");
/// assert_eq!(decode_any("aGk", 16).unwrap(), b"hi");
/// assert_eq!(decode_any("-_8", 16).unwrap(), [0xfb, 0xff]);
/// assert!(decode_any("+-8", 16).is_err());
/// ```
pub fn decode_any(s: &str, max_decoded: usize) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::new();
    decode_any_into(s, max_decoded, &mut out)?;
    Ok(out)
}

/// Like [`decode_any`], but decodes into a caller-owned buffer (cleared first),
/// so hot paths can reuse one allocation.
///
/// ```
/// let mut buf = Vec::new();
/// pay402_core::b64::decode_any_into("aGk", 16, &mut buf).unwrap();
/// assert_eq!(buf, b"hi");
/// ```
pub fn decode_any_into(s: &str, max_decoded: usize, out: &mut Vec<u8>) -> Result<(), Base64Error> {
    out.clear();
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(Base64Error::Empty);
    }
    // 4 chars -> 3 bytes; reject before decoding anything.
    if bytes.len() / 4 * 3 > max_decoded.saturating_add(3) {
        return Err(Base64Error::TooLong);
    }
    // SIMD decoding (base64-simd). Padding decides the engine: a length that
    // is a multiple of 4 may carry padding, any other length must not.
    let padded = bytes.len().is_multiple_of(4);
    let (std_engine, url_engine) = if padded {
        (&base64_simd::STANDARD, &base64_simd::URL_SAFE)
    } else {
        (&base64_simd::STANDARD_NO_PAD, &base64_simd::URL_SAFE_NO_PAD)
    };
    // Fast path: the standard alphabet (what Aperture and pay402 emit). Only
    // when that fails do we look for URL-safe characters.
    if std_engine.decode_append(bytes, out).is_err() {
        out.clear();
        let url_chars = bytes.iter().any(|&b| b == b'-' || b == b'_');
        if !url_chars {
            return Err(Base64Error::Invalid);
        }
        if bytes.iter().any(|&b| b == b'+' || b == b'/') {
            return Err(Base64Error::MixedAlphabet);
        }
        if url_engine.decode_append(bytes, out).is_err() {
            out.clear();
            return Err(Base64Error::Invalid);
        }
    }
    if out.len() > max_decoded {
        out.clear();
        return Err(Base64Error::TooLong);
    }
    Ok(())
}

/// Encodes with the standard alphabet and padding (what L402 emits).
///
/// ```
/// assert_eq!(pay402_core::b64::encode_std(b"hi"), "aGk=");
/// ```
pub fn encode_std(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
