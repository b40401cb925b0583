//! A derived macaroon key that remembers the macaroon it last verified.
//!
//! A client presents the same token on every request, so a server that
//! keeps the derived key of a token (as `pay402-server`'s key cache does)
//! can also keep what the signature chain was computed over: the
//! identifier, the caveats and the signature. When a later macaroon is
//! byte for byte the same (compared in constant time), its signature is
//! the one already verified with this very key, and the HMAC chain (four
//! HMAC-SHA-256 for an Aperture-shaped token, about two thirds of a
//! verification's cost) is skipped. The caveats are still checked on every
//! request, since they depend on the request and the time; so is the
//! preimage, in [`PresentedToken::decode`].
//!
//! A macaroon that differs in any byte of its identifier, caveats or
//! signature (an attenuated copy, a forgery) takes the full chain. The memo
//! lives beside the key: a key dropped on revocation takes its memo along.

use std::sync::OnceLock;

use zeroize::Zeroizing;

use super::caveat::{Satisfier, VerifyContext, verify_caveats};
use super::macaroon::{MacaroonKey, MacaroonRef};
use super::token::{L402Error, PresentedToken, VerifiedToken};

/// A derived key with a memo of the first macaroon whose signature it
/// verified.
///
/// ```
/// use pay402_core::l402::{CachedKey, Credential, Identifier, Macaroon, PresentedToken, RootKey, TokenId, VerifyContext};
/// use pay402_core::lightning::Preimage;
/// use pay402_core::time::UnixTime;
///
/// let root = RootKey::from_bytes([1; 32]);
/// let preimage = Preimage::from_bytes([2; 32]);
/// let id = Identifier::new(preimage.payment_hash(), TokenId([3; 32]));
/// let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
/// mac.add_first_party_caveat("services=api:0");
/// let header = Credential::new(&mac.to_base64(), preimage).to_header_value();
///
/// let key = CachedKey::new(root.derive());
/// let ctx = VerifyContext::new("api", UnixTime(0));
/// for _ in 0..2 {
///     // The first call runs the HMAC chain and remembers the macaroon;
///     // the second finds it remembered.
///     let cred = Credential::parse(&header).unwrap();
///     let mut buf = Vec::new();
///     let token = PresentedToken::decode(&cred, &mut buf).unwrap();
///     assert!(token.verify_cached(&key, &[], &ctx).is_ok());
///     assert!(key.remembers(token.macaroon()));
/// }
/// ```
pub struct CachedKey {
    key: MacaroonKey,
    verified: OnceLock<Remembered>,
}

/// What a signature was verified over: identifier ‖ caveats ‖ signature,
/// with where the identifier ends. Wiped on drop (the signature is a bearer
/// secret).
struct Remembered {
    bytes: Zeroizing<Box<[u8]>>,
    identifier_len: usize,
}

impl std::fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKey")
            .field("remembers", &self.verified.get().is_some())
            .finish_non_exhaustive()
    }
}

impl CachedKey {
    /// A key that remembers nothing yet.
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, RootKey};
    /// let key = CachedKey::new(RootKey::from_bytes([1; 32]).derive());
    /// assert_eq!(format!("{key:?}"), "CachedKey { remembers: false, .. }");
    /// ```
    pub fn new(key: MacaroonKey) -> CachedKey {
        CachedKey {
            key,
            verified: OnceLock::new(),
        }
    }

    /// The derived key.
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, RootKey};
    /// let root = RootKey::from_bytes([1; 32]);
    /// assert!(CachedKey::new(root.derive()).key() == &root.derive());
    /// ```
    pub fn key(&self) -> &MacaroonKey {
        &self.key
    }

    /// Whether `macaroon`'s identifier, caveats and signature are the ones
    /// this key verified before, compared in constant time (the lengths
    /// are not secret).
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, Macaroon, MacaroonRef, RootKey};
    /// let root = RootKey::from_bytes([1; 32]);
    /// let bytes = Macaroon::new(&root, None, b"id").encode_v2();
    /// let key = CachedKey::new(root.derive());
    /// let m = MacaroonRef::decode(&bytes).unwrap();
    /// assert!(!key.remembers(&m));
    /// assert!(key.verify_signature(&m));
    /// assert!(key.remembers(&m));
    /// ```
    pub fn remembers(&self, macaroon: &MacaroonRef<'_>) -> bool {
        let Some(r) = self.verified.get() else {
            return false;
        };
        let identifier = macaroon.identifier();
        let caveats = macaroon.raw_caveats();
        if identifier.len() != r.identifier_len
            || r.bytes.len() != identifier.len() + caveats.len() + 32
        {
            return false;
        }
        let (id, rest) = r.bytes.split_at(r.identifier_len);
        let (cav, sig) = rest.split_at(caveats.len());
        // Every part compared, then combined: no early exit on content.
        let same_id = crate::ct::eq_slices(id, identifier);
        let same_caveats = crate::ct::eq_slices(cav, caveats);
        let same_sig = crate::ct::eq_slices(sig, macaroon.signature());
        same_id & same_caveats & same_sig
    }

    /// Whether `macaroon`'s signature chain verifies with this key: at once
    /// when the macaroon is the one remembered, else by the HMAC chain,
    /// remembering the macaroon when it verifies and nothing is remembered
    /// yet.
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, Macaroon, MacaroonRef, RootKey};
    /// let root = RootKey::from_bytes([1; 32]);
    /// let good = Macaroon::new(&root, None, b"id").encode_v2();
    /// let other = Macaroon::new(&RootKey::from_bytes([2; 32]), None, b"id").encode_v2();
    /// let key = CachedKey::new(root.derive());
    /// assert!(!key.verify_signature(&MacaroonRef::decode(&other).unwrap()));
    /// assert!(key.verify_signature(&MacaroonRef::decode(&good).unwrap()));
    /// assert!(key.verify_signature(&MacaroonRef::decode(&good).unwrap()));
    /// assert!(!key.verify_signature(&MacaroonRef::decode(&other).unwrap()));
    /// ```
    pub fn verify_signature(&self, macaroon: &MacaroonRef<'_>) -> bool {
        if self.remembers(macaroon) {
            return true;
        }
        if !macaroon.verify_signature(&self.key) {
            return false;
        }
        if self.verified.get().is_none() {
            let identifier = macaroon.identifier();
            let caveats = macaroon.raw_caveats();
            let mut bytes = Vec::with_capacity(identifier.len() + caveats.len() + 32);
            bytes.extend_from_slice(identifier);
            bytes.extend_from_slice(caveats);
            bytes.extend_from_slice(macaroon.signature());
            // Another thread may have set it meanwhile: either memo is a
            // macaroon verified with this key.
            let _ = self.verified.set(Remembered {
                bytes: Zeroizing::new(bytes.into_boxed_slice()),
                identifier_len: identifier.len(),
            });
        }
        true
    }
}

impl PresentedToken<'_> {
    /// Steps 4-5 like [`PresentedToken::verify`], with a [`CachedKey`]: the
    /// signature chain is skipped when this macaroon is the one the key
    /// remembers; the caveats are always checked.
    ///
    /// ```
    /// use pay402_core::l402::{CachedKey, Credential, Identifier, L402Error, Macaroon, PresentedToken, RootKey, TokenId, VerifyContext};
    /// use pay402_core::lightning::Preimage;
    /// use pay402_core::time::UnixTime;
    ///
    /// let root = RootKey::from_bytes([1; 32]);
    /// let preimage = Preimage::from_bytes([2; 32]);
    /// let id = Identifier::new(preimage.payment_hash(), TokenId([3; 32]));
    /// let mut mac = Macaroon::new(&root, None, &id.encode());
    /// mac.add_first_party_caveat("services=api:0");
    /// let valid = Credential::new(&mac.to_base64(), preimage.clone()).to_header_value();
    /// // The same token without its caveat: a forgery (the signature is the
    /// // one of the macaroon with the caveat).
    /// let bare = Macaroon::new(&root, None, &id.encode());
    /// let mut bytes = bare.encode_v2();
    /// let at = bytes.windows(32).position(|w| w == bare.signature()).unwrap();
    /// bytes[at..at + 32].copy_from_slice(mac.signature());
    /// let bare = Macaroon::decode_v2(&bytes).unwrap();
    /// let forged = Credential::new(&bare.to_base64(), preimage).to_header_value();
    ///
    /// let key = CachedKey::new(root.derive());
    /// let ctx = VerifyContext::new("api", UnixTime(0));
    /// let verify = |header: &str| {
    ///     let cred = Credential::parse(header).unwrap();
    ///     let mut buf = Vec::new();
    ///     PresentedToken::decode(&cred, &mut buf).unwrap().verify_cached(&key, &[], &ctx).map(|_| ())
    /// };
    /// assert_eq!(verify(&valid), Ok(()));
    /// assert_eq!(verify(&forged), Err(L402Error::InvalidSignature));
    /// assert_eq!(verify(&valid), Ok(()));
    /// let other_service = VerifyContext::new("other", UnixTime(0));
    /// let cred = Credential::parse(&valid).unwrap();
    /// let mut buf = Vec::new();
    /// let token = PresentedToken::decode(&cred, &mut buf).unwrap();
    /// assert!(token.verify_cached(&key, &[], &other_service).is_err(), "caveats still checked");
    /// ```
    pub fn verify_cached(
        &self,
        key: &CachedKey,
        extra: &[&dyn Satisfier],
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedToken, L402Error> {
        if !key.verify_signature(self.macaroon()) {
            return Err(L402Error::InvalidSignature);
        }
        verify_caveats(self.macaroon().caveats(), extra, ctx)?;
        Ok(self.verified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l402::{Identifier, Macaroon, RootKey, TokenId};

    fn token() -> (RootKey, Macaroon) {
        let root = RootKey::from_bytes([7; 32]);
        let id = Identifier::new(crate::lightning::PaymentHash([8; 32]), TokenId([9; 32]));
        let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
        mac.add_first_party_caveat("services=api:0");
        mac.add_first_party_caveat("api_valid_until=2000");
        (root, mac)
    }

    #[test]
    fn a_macaroon_differing_in_any_signed_byte_is_not_remembered() {
        let (root, mac) = token();
        let bytes = mac.encode_v2();
        let key = CachedKey::new(root.derive());
        assert!(key.verify_signature(&MacaroonRef::decode(&bytes).unwrap()));
        let mut checked = 0;
        for i in 0..bytes.len() {
            let mut other = bytes.clone();
            other[i] ^= 0x01;
            let Ok(m) = MacaroonRef::decode(&other) else {
                continue;
            };
            let same_signed = m.identifier() == mac.identifier()
                && m.caveats().eq(mac.caveats().iter().map(Vec::as_slice))
                && m.signature() == mac.signature();
            if same_signed {
                continue; // the location: not signed, not compared
            }
            checked += 1;
            assert!(!key.remembers(&m), "byte {i}");
            assert!(!key.verify_signature(&m), "byte {i}");
        }
        assert!(checked > 100, "{checked}");
        assert!(key.remembers(&MacaroonRef::decode(&bytes).unwrap()));
    }

    #[test]
    fn an_attenuated_copy_verifies_by_the_chain_and_leaves_the_memo() {
        let (root, mac) = token();
        let first = mac.encode_v2();
        let mut narrower = mac.clone();
        narrower.add_first_party_caveat("api_capabilities=read");
        let second = narrower.encode_v2();
        let key = CachedKey::new(root.derive());
        assert!(key.verify_signature(&MacaroonRef::decode(&first).unwrap()));
        let m = MacaroonRef::decode(&second).unwrap();
        assert!(!key.remembers(&m));
        assert!(key.verify_signature(&m), "valid, by the chain");
        assert!(!key.remembers(&m), "the first memo stays");
        assert!(key.remembers(&MacaroonRef::decode(&first).unwrap()));
    }

    #[test]
    fn a_memo_is_kept_only_by_the_key_that_verified() {
        let (root, mac) = token();
        let bytes = mac.encode_v2();
        let m = MacaroonRef::decode(&bytes).unwrap();
        let wrong = CachedKey::new(RootKey::from_bytes([1; 32]).derive());
        assert!(!wrong.verify_signature(&m));
        assert!(!wrong.remembers(&m), "nothing remembered after a failure");
        assert!(CachedKey::new(root.derive()).verify_signature(&m));
    }
}
