//! Base64 as L402 uses it: emit standard padded, accept all four flavours.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);

/// Standard alphabet, padding optional on decode.
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// URL-safe alphabet, padding optional on decode.
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

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
    let mut std_chars = false;
    let mut url_chars = false;
    for &b in bytes {
        match b {
            b'+' | b'/' => std_chars = true,
            b'-' | b'_' => url_chars = true,
            _ => {}
        }
    }
    let engine = match (std_chars, url_chars) {
        (true, true) => return Err(Base64Error::MixedAlphabet),
        (false, true) => &URL_LENIENT,
        _ => &STD_LENIENT,
    };
    engine
        .decode_vec(bytes, out)
        .map_err(|_| Base64Error::Invalid)?;
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
