//! The issuing server's memory of the `lightning`/`charge` challenges it
//! issued: challenge id → the exact bound parameters and the facts pinned
//! in them.
//!
//! A credential whose echoed challenge is, byte for byte, one this instance
//! issued (every HMAC slot compared in constant time, with its length) is
//! the challenge the HMAC would accept: its id was computed over exactly
//! these bytes by this instance's current secret. Such a credential skips
//! the second HMAC over the ~1 KB `request` and the decode of the
//! `request` (the pinned amount, network and payment hash are remembered
//! instead). Everything else runs as on the HMAC path, in the same order
//! and with the same errors: route pins, amount and network, `expires`,
//! the payload, the preimage.
//!
//! A credential without an entry (another instance issued it, the entry
//! was evicted, taken by an earlier use, or the bytes differ in any way)
//! goes through the HMAC path, which stays the authority: the cache can
//! only take a shortcut to the answer the HMAC path gives.
//!
//! One memory belongs to one key ring, the one that issues into it and
//! verifies from it: an entry stands for "this ring's current secret bound
//! these bytes", so a ring whose secrets change must start a new memory.
//!
//! Bounded: at most `capacity` entries; an insert first drops entries whose
//! `expires` has passed, then the oldest ones while full. A hit removes the
//! entry (a charge pays once; a retry takes the HMAC path).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::lightning::{ChargeOffer, IssueError, IssuedFacts, issue_with_facts};
use crate::mpp::binding::{BindingSlots, ChallengeKeys};
use crate::mpp::challenge::Challenge;
use crate::time::UnixTime;

/// The default capacity: 4 096 challenges (about 5 MB at ~1.2 KB each).
///
/// ```
/// assert_eq!(pay402_core::mpp::methods::issued::DEFAULT_CAPACITY, 4096);
/// ```
pub const DEFAULT_CAPACITY: usize = 4096;

/// Challenges this instance issued and no credential has used yet.
///
/// ```
/// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Credential};
/// use pay402_core::mpp::methods::issued::IssuedCharges;
/// use pay402_core::mpp::methods::lightning::{ChargeOffer, ChargeVerifier};
/// # use pay402_core::lightning::Network;
/// # use pay402_core::time::UnixTime;
/// # let bolt11 = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
/// let issued = IssuedCharges::new(16);
/// let now = UnixTime(1_767_225_600);
/// let challenge = issued.issue(&keys, &ChargeOffer::new("api.example.com", bolt11), now).unwrap();
/// assert_eq!(issued.len(), 1);
/// // A credential echoing it (with a wrong preimage here): the cached path
/// // answers what the HMAC path answers.
/// let header = Credential::encode(&challenge, &serde_json::json!({"preimage": "00".repeat(32)}), None).unwrap();
/// let mut buf = Vec::new();
/// let cred = Credential::decode(header.strip_prefix("Payment ").unwrap(), &mut buf).unwrap();
/// let v = ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest);
/// assert_eq!(v.verify_issued_cached(&cred, now, &issued), v.verify_issued(&cred, now));
/// assert_eq!(issued.len(), 0, "a hit takes the entry");
/// ```
#[derive(Debug)]
pub struct IssuedCharges {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Challenge id → what was issued under it.
    map: HashMap<Box<str>, Entry, BuildIdHasher>,
    /// Ids in issuance order, with their `expires` (stale ids of taken
    /// entries are dropped when they reach the front).
    order: VecDeque<(UnixTime, Box<str>)>,
}

/// Hashes challenge ids by their first eight bytes. Every key inserted is
/// an id this instance computed (base64url of an HMAC-SHA256 output under
/// its secret), so those bytes are already uniformly distributed and no
/// client can choose keys that collide; a lookup with a forged id costs one
/// probe and inserts nothing. A keyed SipHash would add ~60 ns per request
/// for no protection.
#[derive(Clone, Copy, Debug, Default)]
struct BuildIdHasher;

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Clone, Copy, Debug)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut w = [0u8; 8];
        let n = bytes.len().min(8);
        w[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(w) ^ bytes.len() as u64;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = self.0.rotate_left(17) ^ u64::from(i);
    }
    fn finish(&self) -> u64 {
        // Spread the bits to the top (hashbrown's control byte) as well.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// One issued challenge.
#[derive(Debug)]
struct Entry {
    /// The HMAC slots, concatenated.
    slots: Box<[u8]>,
    /// Where each slot ends in `slots`, and how many there are (7 or 8).
    ends: [usize; 8],
    count: usize,
    facts: IssuedFacts,
}

impl Entry {
    fn new(c: &Challenge<'_>, facts: IssuedFacts) -> Entry {
        let mut slots = Vec::new();
        let mut ends = [0; 8];
        let mut count = 0;
        for (i, s) in BindingSlots::new(c).enumerate().take(8) {
            slots.extend_from_slice(s.as_bytes());
            ends[i] = slots.len();
            count = i + 1;
        }
        Entry {
            slots: slots.into_boxed_slice(),
            ends,
            count,
            facts,
        }
    }

    /// Whether `c`'s HMAC slots are these, byte for byte. Lengths (public:
    /// the client sent them) are compared first; the bytes in constant
    /// time.
    fn matches(&self, c: &Challenge<'_>) -> bool {
        let mut n = 0;
        let mut start = 0;
        let mut equal = true;
        for (i, s) in BindingSlots::new(c).enumerate() {
            if i >= self.count {
                return false;
            }
            let stored = &self.slots[start..self.ends[i]];
            if stored.len() != s.len() {
                return false;
            }
            equal &= crate::ct::eq_slices(stored, s.as_bytes());
            start = self.ends[i];
            n = i + 1;
        }
        n == self.count && equal
    }
}

impl IssuedCharges {
    /// An empty memory of at most `capacity` challenges (0: remember none).
    ///
    /// ```
    /// let c = pay402_core::mpp::methods::issued::IssuedCharges::new(0);
    /// assert!(c.is_empty());
    /// ```
    pub fn new(capacity: usize) -> IssuedCharges {
        IssuedCharges {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every operation leaves the map consistent (one insert, one
        // remove, pops): a panic elsewhere cannot corrupt it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many challenges are remembered.
    ///
    /// ```
    /// assert_eq!(pay402_core::mpp::methods::issued::IssuedCharges::new(8).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether none is remembered.
    ///
    /// ```
    /// assert!(pay402_core::mpp::methods::issued::IssuedCharges::new(8).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Issues the challenge for `offer` at `now`, exactly as
    /// [`issue_charge`](super::lightning::issue_charge) does, and remembers it.
    ///
    /// See [`IssuedCharges`].
    ///
    /// ```
    /// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::issued::IssuedCharges, methods::lightning::ChargeOffer};
    /// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// let e = IssuedCharges::new(8).issue(&keys, &ChargeOffer::new("r", "not an invoice"), pay402_core::time::UnixTime(0));
    /// assert!(e.is_err());
    /// ```
    pub fn issue(
        &self,
        keys: &ChallengeKeys,
        offer: &ChargeOffer<'_>,
        now: UnixTime,
    ) -> Result<Challenge<'static>, IssueError> {
        let (c, facts) = issue_with_facts(keys, offer, now)?;
        if self.capacity > 0 {
            let entry = Entry::new(&c, facts);
            let id: Box<str> = c.id.as_ref().into();
            let mut g = self.lock();
            let inner = &mut *g;
            // Drop what expired, then the oldest while full (the queue is
            // kept within twice the capacity, stale ids included).
            while let Some((expires, _)) = inner.order.front() {
                let full = inner.map.len() >= self.capacity
                    || inner.order.len() >= self.capacity.saturating_mul(2);
                if !(full || *expires <= now) {
                    break;
                }
                if let Some((_, old)) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
            inner.order.push_back((facts.expires, id.clone()));
            inner.map.insert(id, entry);
        }
        Ok(c)
    }

    /// The facts pinned in `c`, when `c` is byte for byte a challenge this
    /// memory holds; the entry is taken (removed) on a match. `None`
    /// otherwise, leaving any entry under that id in place.
    pub(crate) fn take(&self, c: &Challenge<'_>) -> Option<IssuedFacts> {
        if self.capacity == 0 {
            return None;
        }
        let mut g = self.lock();
        let (id, entry) = g.map.remove_entry(c.id.as_ref())?;
        if entry.matches(c) {
            Some(entry.facts)
        } else {
            // Not what was issued under this id: left for the real one.
            g.map.insert(id, entry);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lightning::Network;
    use crate::mpp::error::VerifyError;
    use crate::mpp::methods::lightning::ChargeVerifier;
    use crate::mpp::{ChallengeKey, Credential};

    /// A regtest invoice of 100 sat (mpp.md §12.5), valid for an hour from
    /// 2026-01-01T00:00:00Z.
    const BOLT11: &str = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
    /// Its preimage (32 bytes of 0x11).
    const PREIMAGE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const NOW: UnixTime = UnixTime(1_767_225_600);

    fn keys() -> ChallengeKeys {
        ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap())
    }

    fn header(c: &Challenge<'_>, preimage: &str) -> String {
        Credential::encode(c, &serde_json::json!({ "preimage": preimage }), None).unwrap()
    }

    /// Both paths on one credential: the cached answer must equal the HMAC
    /// path's, whatever it is.
    fn both(
        keys: &ChallengeKeys,
        issued: &IssuedCharges,
        header: &str,
        amount: u64,
        now: UnixTime,
    ) -> Result<crate::mpp::methods::lightning::VerifiedCharge, VerifyError> {
        let mut buf = Vec::new();
        let cred = Credential::decode(header.strip_prefix("Payment ").unwrap(), &mut buf).unwrap();
        let v = ChargeVerifier::new(keys, "api.example.com", amount, Network::Regtest);
        let hmac = v.verify_issued(&cred, now);
        let cached = v.verify_issued_cached(&cred, now, issued);
        assert_eq!(cached, hmac, "the cached path answers as the HMAC path");
        cached
    }

    fn issue(keys: &ChallengeKeys, issued: &IssuedCharges) -> Challenge<'static> {
        issued
            .issue(keys, &ChargeOffer::new("api.example.com", BOLT11), NOW)
            .unwrap()
    }

    #[test]
    fn a_hit_answers_as_the_hmac_path_and_takes_the_entry() {
        let (keys, issued) = (keys(), IssuedCharges::new(8));
        let c = issue(&keys, &issued);
        assert_eq!(issued.len(), 1);
        let h = header(&c, PREIMAGE);
        let r = both(&keys, &issued, &h, 100, NOW);
        let v = r.clone().unwrap();
        assert_eq!(v.challenge_id, c.id);
        assert_eq!(v.expires_at, UnixTime(NOW.0 + 300));
        assert_eq!(v.amount, crate::money::Msat(100_000));
        assert_eq!(issued.len(), 0);
        // Taken: the next use goes through the HMAC path, same answer.
        assert_eq!(both(&keys, &issued, &h, 100, NOW), r);
    }

    #[test]
    fn the_pins_refuse_in_the_hmac_paths_order() {
        let (keys, issued) = (keys(), IssuedCharges::new(8));
        for (amount, now, want) in [
            (99, NOW, VerifyError::RouteMismatch("amount")),
            (100, UnixTime(NOW.0 + 301), VerifyError::Expired),
        ] {
            let c = issue(&keys, &issued);
            assert_eq!(
                both(&keys, &issued, &header(&c, PREIMAGE), amount, now),
                Err(want)
            );
        }
        let c = issue(&keys, &issued);
        assert_eq!(
            both(&keys, &issued, &header(&c, "zz"), 100, NOW),
            Err(VerifyError::InvalidPayload("preimage is not 64 hex digits"))
        );
    }

    #[test]
    fn any_changed_byte_misses_and_the_hmac_refuses() {
        let keys = keys();
        let issued = IssuedCharges::new(8);
        let c = issue(&keys, &issued);
        let mut tampered = Vec::new();
        let mut t = c.clone();
        t.request = format!("{}A", &c.request[..c.request.len() - 1]).into();
        tampered.push(t);
        let mut t = c.clone();
        t.expires = Some("2026-01-01T01:00:00Z".into());
        tampered.push(t);
        let mut t = c.clone();
        t.header = Some("Payment-Authorization".into());
        tampered.push(t);
        let mut t = c.clone();
        t.opaque = Some("e30".into());
        tampered.push(t);
        let mut t = c.clone();
        t.realm = "api.example.con".into();
        tampered.push(t);
        for t in &tampered {
            assert!(issued.take(t).is_none());
            let r = both(&keys, &issued, &header(t, PREIMAGE), 100, NOW);
            assert!(matches!(r, Err(VerifyError::ChallengeNotIssued)), "{r:?}");
        }
        assert_eq!(issued.len(), 1, "a miss leaves the entry");
    }

    #[test]
    fn bounded_and_expired_entries_go_first() {
        let keys = keys();
        let issued = IssuedCharges::new(2);
        // Three distinct challenges (one invoice, three lifetimes).
        let with_ttl = |ttl| {
            let mut o = ChargeOffer::new("api.example.com", BOLT11);
            o.ttl_secs = ttl;
            issued.issue(&keys, &o, NOW).unwrap()
        };
        let first = with_ttl(300);
        with_ttl(301);
        with_ttl(302);
        assert_eq!(issued.len(), 2);
        assert!(issued.take(&first).is_none(), "the oldest was evicted");
        // Evicted: the HMAC path still verifies it.
        let _ = both(&keys, &issued, &header(&first, PREIMAGE), 100, NOW);
        // Past every `expires`, an insert clears them out.
        let later = UnixTime(NOW.0 + 400); // past 302 s
        issued
            .issue(&keys, &ChargeOffer::new("api.example.com", BOLT11), later)
            .unwrap();
        assert_eq!(issued.len(), 1);
        let none = IssuedCharges::new(0);
        issue(&keys, &none);
        assert!(none.is_empty());
    }
}
