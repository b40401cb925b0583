//! base64url as MPP uses it (RFC 4648 §5): emit without padding; decode
//! strictly on the server, tolerantly on the client.
//!
//! The strict decoder follows Aperture's rules, so one byte string has one
//! spelling: the URL-safe alphabet only, no line breaks, padding optional but
//! when present exactly right (`=`/`==` to a multiple of 4), and the unused
//! bits of the last character zero (`AB` is refused: it would decode like
//! `AA`). The tolerant decoder is [`crate::b64::decode_any`]: either alphabet,
//! padded or not.

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::b64::Base64Error;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes with the URL-safe alphabet and no padding (what MPP emits).
///
/// ```
/// use pay402_core::mpp::b64url::encode;
/// assert_eq!(encode(b"{}"), "e30");
/// assert_eq!(encode(&[0xfb, 0xff]), "-_8");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_type(bytes)
}

/// Appends the unpadded URL-safe encoding of `bytes` to `out`.
///
/// ```
/// let mut s = String::from("Payment ");
/// pay402_core::mpp::b64url::encode_into(b"{}", &mut s);
/// assert_eq!(s, "Payment e30");
/// ```
pub fn encode_into(bytes: &[u8], out: &mut String) {
    base64_simd::URL_SAFE_NO_PAD.encode_append(bytes, out);
}

/// Decodes strictly (the server's rule), up to `max_decoded` bytes, into
/// `out` (cleared first). An empty input decodes to nothing.
///
/// ```
/// use pay402_core::mpp::b64url::decode_strict_into;
/// let mut out = Vec::new();
/// decode_strict_into("aGVsbG8", 64, &mut out).unwrap();
/// assert_eq!(out, b"hello");
/// decode_strict_into("aGVsbG8=", 64, &mut out).unwrap();
/// assert_eq!(out, b"hello");
/// assert!(decode_strict_into("AB", 64, &mut out).is_err());   // trailing bits
/// assert!(decode_strict_into("a+b/", 64, &mut out).is_err()); // standard alphabet
/// ```
pub fn decode_strict_into(
    s: &str,
    max_decoded: usize,
    out: &mut Vec<u8>,
) -> Result<(), Base64Error> {
    out.clear();
    if s.len() / 4 * 3 > max_decoded.saturating_add(3) {
        return Err(Base64Error::TooLong);
    }
    // SIMD first (strict: URL-safe alphabet, canonical trailing bits, exact
    // padding when padded); the scalar engine settles what SIMD refuses, so
    // the rules stay those of `STRICT`.
    let b = s.as_bytes();
    let simd = if b.last() == Some(&b'=') {
        &base64_simd::URL_SAFE
    } else {
        &base64_simd::URL_SAFE_NO_PAD
    };
    if simd.decode_append(b, out).is_err() {
        out.clear();
        STRICT
            .decode_vec(b, out)
            .map_err(|_| Base64Error::Invalid)?;
    }
    if out.len() > max_decoded {
        out.clear();
        return Err(Base64Error::TooLong);
    }
    Ok(())
}

/// [`decode_strict_into`] into a new vector.
///
/// ```
/// assert_eq!(pay402_core::mpp::b64url::decode_strict("e30", 16).unwrap(), b"{}");
/// ```
pub fn decode_strict(s: &str, max_decoded: usize) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::new();
    decode_strict_into(s, max_decoded, &mut out)?;
    Ok(out)
}

/// Decodes tolerantly (the client's rule): standard or URL-safe alphabet,
/// padded or not. Empty input is refused.
///
/// ```
/// use pay402_core::mpp::b64url::decode_tolerant;
/// assert_eq!(decode_tolerant("e30=", 16).unwrap(), b"{}");
/// assert_eq!(decode_tolerant("+/8", 16).unwrap(), [0xfb, 0xff]);
/// ```
pub fn decode_tolerant(s: &str, max_decoded: usize) -> Result<Vec<u8>, Base64Error> {
    crate::b64::decode_any(s, max_decoded)
}

/// Whether `s` is non-empty and uses only the unpadded base64url alphabet
/// (the grammar of `request` and `opaque`).
///
/// ```
/// use pay402_core::mpp::b64url::is_nopad_alphabet;
/// assert!(is_nopad_alphabet("eyJhIjoiYiJ9"));
/// assert!(!is_nopad_alphabet("e30="));
/// assert!(!is_nopad_alphabet(""));
/// ```
pub fn is_nopad_alphabet(s: &str) -> bool {
    // Range tests OR-ed without an early exit, 32 bytes at a time: no
    // branch depends on the bytes and the compiler vectorizes the loop, so
    // a 1 KB `request` is checked in a few dozen steps.
    fn outside(b: u8) -> u8 {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        u8::from(!(letter | digit | (b == b'-') | (b == b'_')))
    }
    let b = s.as_bytes();
    let mut bad = 0u8;
    for chunk in b.chunks(32) {
        bad |= chunk.iter().fold(0u8, |acc, &x| acc | outside(x));
    }
    !b.is_empty() && bad == 0
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::{encode, encode_into, is_nopad_alphabet};

    #[test]
    fn the_alphabet_check_agrees_with_the_definition_on_every_byte() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            // Alone, and at every position of a long valid string.
            let one = [b];
            let got = std::str::from_utf8(&one).map(is_nopad_alphabet);
            if let Ok(got) = got {
                assert_eq!(got, want, "{b:#x}");
            }
            if b.is_ascii() {
                for at in [0, 31, 32, 33, 99] {
                    let mut s = vec![b'A'; 100];
                    s[at] = b;
                    let s = String::from_utf8(s).unwrap();
                    assert_eq!(is_nopad_alphabet(&s), want, "{b:#x} at {at}");
                }
            }
        }
        assert!(!is_nopad_alphabet("aé"));
    }

    #[test]
    fn the_simd_encoder_writes_what_the_reference_writes() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0, 1, 2, 3, 4, 31, 32, 33, 64, 255, 700] {
            let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data[..n]);
            assert_eq!(encode(&data[..n]), want);
            let mut s = String::from("x ");
            encode_into(&data[..n], &mut s);
            assert_eq!(s, format!("x {want}"));
        }
    }
}
