//! Constant-time comparison of secrets.
//!
//! `subtle`'s slice comparison puts an optimisation barrier on every byte;
//! folding the XOR of four 64-bit words first and comparing once keeps the
//! comparison free of data-dependent branches at a fraction of the cost.

use subtle::ConstantTimeEq;

/// Whether `a == b`, in time independent of where they differ.
///
/// ```
/// use pay402_core::ct::eq32;
/// assert!(eq32(&[7; 32], &[7; 32]));
/// let mut b = [7; 32];
/// b[31] ^= 1;
/// assert!(!eq32(&[7; 32], &b));
/// ```
pub fn eq32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    diff.ct_eq(&0).into()
}

/// Whether `a == b`, in time that depends on their lengths only (a length
/// difference answers `false` at once; lengths are not secret here): the
/// XOR of 64-bit words folded, compared once.
///
/// ```
/// use pay402_core::ct::eq_slices;
/// assert!(eq_slices(b"macaroon bytes", b"macaroon bytes"));
/// assert!(!eq_slices(b"macaroon bytes", b"macaroon bytez"));
/// assert!(!eq_slices(b"short", b"longer"));
/// ```
pub fn eq_slices(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(b.len() / 8 * 8);
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    diff.ct_eq(&0).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_slices_compares_every_byte() {
        let a: Vec<u8> = (0..37).collect();
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 0x20;
            assert!(!eq_slices(&a, &b), "{i}");
        }
        assert!(eq_slices(&a, &a.clone()));
        assert!(!eq_slices(&a, &a[..36]));
        assert!(eq_slices(&[], &[]));
    }
}
