//! The HMAC-SHA256 challenge id: how a server binds a challenge's parameters
//! without storing it, and recognises the echo.
//!
//! ```text
//! input = realm "|" method "|" intent "|" request "|" (expires or "") "|" (digest or "")
//!         [ "|" header ]        ; only when header is present and is not Authorization
//!         "|" (opaque or "")
//! id    = base64url_nopad(HMAC-SHA256(secret, input))
//! ```
//!
//! Every slot is the string as sent (never re-encoded), `description` is not
//! bound, and the echoed id is compared with the recomputed one in constant
//! time. A server keeps its previous secret(s) in [`ChallengeKeys`] while
//! their challenges may still be presented (secret rotation).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::b64url;
use super::challenge::Challenge;
use crate::problem::Reason;

/// Shortest secret [`ChallengeKey::new`] accepts, in bytes (mppx, mpp-rs).
pub const MIN_KEY_LEN: usize = 32;

/// The secret was shorter than [`MIN_KEY_LEN`].
///
/// ```
/// use pay402_core::mpp::ChallengeKey;
/// assert!(ChallengeKey::new(b"short").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("challenge secret must be at least {MIN_KEY_LEN} bytes")]
pub struct KeyTooShort;

impl Reason for KeyTooShort {
    fn reason(&self) -> &'static str {
        "challenge_key_too_short"
    }
    fn status(&self) -> u16 {
        500
    }
}

/// An HMAC secret for challenge ids. Zeroized on drop; `Debug` is redacted.
///
/// ```
/// use pay402_core::mpp::ChallengeKey;
/// let k = ChallengeKey::new(&[7u8; 32]).unwrap();
/// assert_eq!(format!("{k:?}"), "ChallengeKey(..)");
/// ```
#[derive(Clone)]
pub struct ChallengeKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    /// A key from at least [`MIN_KEY_LEN`] secret bytes. Peers that take a
    /// string secret (mppx `MPP_SECRET_KEY`) use its UTF-8 bytes.
    ///
    /// ```
    /// assert!(pay402_core::mpp::ChallengeKey::new(&[1; 32]).is_ok());
    /// ```
    pub fn new(secret: &[u8]) -> Result<ChallengeKey, KeyTooShort> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyTooShort);
        }
        Ok(ChallengeKey(Zeroizing::new(secret.to_vec())))
    }

    /// A key of any length. Only for reproducing other implementations' test
    /// vectors, whose secrets are short; a server uses [`ChallengeKey::new`].
    ///
    /// ```
    /// let k = pay402_core::mpp::ChallengeKey::new_unchecked(b"test-vector-secret");
    /// # let _ = k;
    /// ```
    pub fn new_unchecked(secret: &[u8]) -> ChallengeKey {
        ChallengeKey(Zeroizing::new(secret.to_vec()))
    }

    /// The raw 32-byte HMAC of `challenge`'s bound parameters.
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeKey};
    /// let k = ChallengeKey::new_unchecked(b"test-vector-secret");
    /// let c = Challenge::new("", "api.example.com", "tempo", "charge", "eyJhbW91bnQiOiIxMDAwMDAwIn0");
    /// assert_eq!(k.compute_id(&c), "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4");
    /// ```
    pub fn compute(&self, challenge: &Challenge<'_>) -> [u8; 32] {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        for (i, slot) in BindingSlots::new(challenge).enumerate() {
            if i > 0 {
                mac.update(b"|");
            }
            mac.update(slot.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// The challenge id: base64url of [`ChallengeKey::compute`] (43 characters).
    ///
    /// See the example of [`ChallengeKey::compute`].
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeKey};
    /// let k = ChallengeKey::new(&[9; 32]).unwrap();
    /// assert_eq!(k.compute_id(&Challenge::new("", "r", "m", "i", "e30")).len(), 43);
    /// ```
    pub fn compute_id(&self, challenge: &Challenge<'_>) -> String {
        b64url::encode(&self.compute(challenge))
    }
}

/// The bound parameters of a challenge in HMAC order (7 slots, 8 with `header`).
///
/// ```
/// use pay402_core::mpp::{Challenge, binding::BindingSlots};
/// let c = Challenge::new("i", "r", "m", "c", "e30");
/// assert_eq!(BindingSlots::new(&c).collect::<Vec<_>>().join("|"), "r|m|c|e30|||");
/// ```
pub struct BindingSlots<'c> {
    slots: [&'c str; 8],
    len: usize,
    next: usize,
}

impl<'c> BindingSlots<'c> {
    /// The slots of `c`.
    ///
    /// ```
    /// let c = pay402_core::mpp::Challenge::new("i", "r", "m", "c", "e30");
    /// assert_eq!(pay402_core::mpp::binding::BindingSlots::new(&c).count(), 7);
    /// ```
    pub fn new(c: &'c Challenge<'_>) -> BindingSlots<'c> {
        let mut slots = [""; 8];
        slots[0] = &c.realm;
        slots[1] = &c.method;
        slots[2] = &c.intent;
        slots[3] = &c.request;
        slots[4] = c.expires.as_deref().unwrap_or("");
        slots[5] = c.digest.as_deref().unwrap_or("");
        let mut len = 6;
        if let Some(h) = c.header.as_deref()
            && !h.eq_ignore_ascii_case("Authorization")
        {
            slots[len] = h;
            len += 1;
        }
        slots[len] = c.opaque.as_deref().unwrap_or("");
        BindingSlots {
            slots,
            len: len + 1,
            next: 0,
        }
    }
}

impl<'c> Iterator for BindingSlots<'c> {
    type Item = &'c str;
    fn next(&mut self) -> Option<&'c str> {
        if self.next >= self.len {
            return None;
        }
        self.next += 1;
        Some(self.slots[self.next - 1])
    }
}

/// The HMAC input string (for diagnostics and test vectors; the HMAC itself
/// is computed without building it).
///
/// ```
/// use pay402_core::mpp::{Challenge, binding::binding_input};
/// let mut c = Challenge::new("i", "r", "m", "c", "e30");
/// c.header = Some("Payment-Authorization".into());
/// assert_eq!(binding_input(&c), "r|m|c|e30|||Payment-Authorization|");
/// ```
pub fn binding_input(c: &Challenge<'_>) -> String {
    BindingSlots::new(c).collect::<Vec<_>>().join("|")
}

/// The current secret and the previous ones still honoured.
///
/// ```
/// use pay402_core::mpp::{Challenge, ChallengeKey, ChallengeKeys};
/// let old = ChallengeKey::new(&[1; 32]).unwrap();
/// let new = ChallengeKey::new(&[2; 32]).unwrap();
/// let mut c = Challenge::new("", "r", "lightning", "charge", "e30");
/// c.id = old.compute_id(&c).into();
/// let keys = ChallengeKeys::new(new).with_previous(old);
/// assert_eq!(keys.verify(&c), Some(1)); // accepted under the previous secret
/// ```
#[derive(Clone, Debug)]
pub struct ChallengeKeys {
    keys: Vec<ChallengeKey>,
}

impl ChallengeKeys {
    /// A ring with one (current) secret.
    ///
    /// ```
    /// let k = pay402_core::mpp::ChallengeKeys::new(pay402_core::mpp::ChallengeKey::new(&[1; 32]).unwrap());
    /// # let _ = k;
    /// ```
    pub fn new(current: ChallengeKey) -> ChallengeKeys {
        ChallengeKeys {
            keys: vec![current],
        }
    }

    /// Adds a previous secret, still accepted on verify, never used to issue.
    ///
    /// See [`ChallengeKeys`].
    ///
    /// ```
    /// use pay402_core::mpp::{ChallengeKey, ChallengeKeys};
    /// let k = ChallengeKeys::new(ChallengeKey::new(&[1; 32]).unwrap())
    ///     .with_previous(ChallengeKey::new(&[2; 32]).unwrap());
    /// # let _ = k;
    /// ```
    pub fn with_previous(mut self, key: ChallengeKey) -> ChallengeKeys {
        self.keys.push(key);
        self
    }

    /// The secret that issues new challenges.
    ///
    /// ```
    /// use pay402_core::mpp::{ChallengeKey, ChallengeKeys};
    /// let k = ChallengeKeys::new(ChallengeKey::new(&[1; 32]).unwrap());
    /// let _ = k.current();
    /// ```
    pub fn current(&self) -> &ChallengeKey {
        &self.keys[0]
    }

    /// Sets `challenge.id` to its HMAC under the current secret.
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeKey, ChallengeKeys};
    /// let keys = ChallengeKeys::new(ChallengeKey::new(&[1; 32]).unwrap());
    /// let mut c = Challenge::new("", "r", "lightning", "charge", "e30");
    /// keys.bind(&mut c);
    /// assert_eq!(keys.verify(&c), Some(0));
    /// ```
    pub fn bind(&self, challenge: &mut Challenge<'_>) {
        challenge.id = self.current().compute_id(challenge).into();
    }

    /// Which secret (0 = current) issued `challenge`, comparing its echoed id
    /// with each recomputed HMAC in constant time; `None` if none did.
    ///
    /// See [`ChallengeKeys`].
    ///
    /// ```
    /// use pay402_core::mpp::{Challenge, ChallengeKey, ChallengeKeys};
    /// let keys = ChallengeKeys::new(ChallengeKey::new(&[1; 32]).unwrap());
    /// assert_eq!(keys.verify(&Challenge::new("forged", "r", "m", "c", "e30")), None);
    /// ```
    pub fn verify(&self, challenge: &Challenge<'_>) -> Option<usize> {
        // An id that is not 43 base64url characters of 32 bytes cannot match.
        let mut echoed = [0u8; 32];
        let mut buf = Vec::with_capacity(33);
        if b64url::decode_strict_into(&challenge.id, 32, &mut buf).is_err() || buf.len() != 32 {
            return None;
        }
        echoed.copy_from_slice(&buf);
        if challenge.id.len() != 43 {
            return None;
        }
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if crate::ct::eq32(&k.compute(challenge), &echoed) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}
