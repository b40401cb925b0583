//! Constant-time comparison of 32-byte secrets.
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
