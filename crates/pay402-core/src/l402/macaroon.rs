//! First-party macaroons: the V2 binary codec and the HMAC-SHA256 chain.
//!
//! The layout and key derivation follow go-macaroon, which Aperture uses:
//! the HMAC key is `HMAC-SHA256(key = "macaroons-key-generator", data = root_key)`,
//! then `sig = HMAC(key, identifier)` and `sig = HMAC(sig, caveat)` per caveat.
//! Only first-party caveats are supported; a macaroon with a third-party caveat
//! (one carrying a verification id) is rejected as unsupported.
//!
//! [`MacaroonRef`] decodes without copying: it borrows identifier, location and
//! caveats from the input bytes. [`Macaroon`] is the owned form used to mint.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::b64;

type HmacSha256 = Hmac<Sha256>;

/// Largest encoded macaroon accepted, in bytes.
pub const MAX_MACAROON_BYTES: usize = 8 * 1024;
/// Most caveats accepted in one macaroon.
pub const MAX_CAVEATS: usize = 64;
/// Largest single field (location, identifier, caveat) accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 4 * 1024;

const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

const V2: u8 = 2;
const FIELD_EOS: u64 = 0;
const FIELD_LOCATION: u64 = 1;
const FIELD_IDENTIFIER: u64 = 2;
const FIELD_VID: u64 = 4;
const FIELD_SIGNATURE: u64 = 6;

/// Why macaroon bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacaroonError {
    /// Larger than [`MAX_MACAROON_BYTES`].
    #[error("macaroon larger than {MAX_MACAROON_BYTES} bytes")]
    TooLarge,
    /// Not a V2 binary macaroon.
    #[error("unsupported macaroon format (only V2 binary is accepted)")]
    UnsupportedVersion,
    /// The bytes end in the middle of a field.
    #[error("macaroon truncated")]
    Truncated,
    /// A field is malformed, out of order or unexpected.
    #[error("malformed macaroon field")]
    Malformed,
    /// A field is larger than [`MAX_FIELD_BYTES`].
    #[error("macaroon field too large")]
    FieldTooLarge,
    /// More than [`MAX_CAVEATS`] caveats.
    #[error("more than {MAX_CAVEATS} caveats")]
    TooManyCaveats,
    /// A third-party caveat, which pay402 does not verify.
    #[error("third-party caveats are not supported")]
    ThirdPartyCaveat,
    /// The signature field is missing or not 32 bytes.
    #[error("bad signature field")]
    BadSignature,
    /// Bytes follow the signature.
    #[error("trailing bytes after macaroon")]
    TrailingBytes,
}

/// A macaroon root key (32 bytes), zeroized on drop.
///
/// ```
/// use pay402_core::l402::RootKey;
/// let k = RootKey::from_bytes([1; 32]);
/// assert_eq!(format!("{k:?}"), "RootKey(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; 32]);

impl RootKey {
    /// Wraps 32 random bytes (the caller supplies the randomness).
    ///
    /// ```
    /// let k = pay402_core::l402::RootKey::from_bytes([7; 32]);
    /// assert_eq!(k.as_bytes()[0], 7);
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> RootKey {
        RootKey(bytes)
    }

    /// The raw key bytes (for storage).
    ///
    /// ```
    /// assert_eq!(pay402_core::l402::RootKey::from_bytes([0; 32]).as_bytes().len(), 32);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The go-macaroon HMAC key derived from this root key.
    ///
    /// Caching the derived key saves one HMAC on every verification.
    ///
    /// ```
    /// let k = pay402_core::l402::RootKey::from_bytes([0; 32]);
    /// let d1 = k.derive();
    /// assert!(d1 == k.derive());
    /// ```
    pub fn derive(&self) -> MacaroonKey {
        MacaroonKey(derive_key(&self.0))
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

/// The derived HMAC key that starts a macaroon's signature chain.
///
/// ```
/// use pay402_core::l402::MacaroonKey;
/// // Keys that are not 32 bytes (like lsat-js's "secret") derive the same way.
/// let k = MacaroonKey::derive_from(b"secret");
/// assert_eq!(format!("{k:?}"), "MacaroonKey(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MacaroonKey([u8; 32]);

impl MacaroonKey {
    /// Derives the chain key from a root key of any length.
    ///
    /// ```
    /// use pay402_core::l402::{MacaroonKey, RootKey};
    /// assert!(MacaroonKey::derive_from(&[1; 32]) == RootKey::from_bytes([1; 32]).derive());
    /// ```
    pub fn derive_from(root_key: &[u8]) -> MacaroonKey {
        MacaroonKey(derive_key(root_key))
    }
}

impl PartialEq for MacaroonKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for MacaroonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacaroonKey(..)")
    }
}

/// HMAC-SHA256 with a key of any length (used once per root key).
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .map(|m| m.chain_update(data).finalize().into_bytes().into())
        .unwrap_or([0; 32])
}

/// HMAC-SHA256 with a 32-byte key: every step of the signature chain.
///
/// A key shorter than SHA-256's 64-byte block is zero-padded by HMAC itself,
/// so padding it here and using the infallible fixed-size constructor is the
/// same function, without a `Result` to move the hasher state through.
#[inline(always)]
fn hmac32(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
        .chain_update(data)
        .finalize()
        .into_bytes()
        .into()
}

fn derive_key(root_key: &[u8]) -> [u8; 32] {
    hmac(KEY_GENERATOR, root_key)
}

/// Computes the signature chain over an identifier and caveats.
///
/// ```
/// use pay402_core::l402::macaroon::signature_chain;
/// use pay402_core::l402::MacaroonKey;
/// let key = MacaroonKey::derive_from(&[3; 32]);
/// let sig = signature_chain(&key, b"id", [b"a=b".as_slice()]);
/// assert_eq!(sig.len(), 32);
/// ```
pub fn signature_chain<'c>(
    key: &MacaroonKey,
    identifier: &[u8],
    caveats: impl IntoIterator<Item = &'c [u8]>,
) -> [u8; 32] {
    let mut sig = hmac32(&key.0, identifier);
    for c in caveats {
        sig = hmac32(&sig, c);
    }
    sig
}

/// A decoded macaroon borrowing from its encoded bytes.
///
/// ```
/// use pay402_core::l402::MacaroonRef;
/// let bytes = hex::decode("0202420000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb000006201790bc6dc1964456355926bd4863e204d96b42629e94087abc906f85e91ccf93").unwrap();
/// let m = MacaroonRef::decode(&bytes).unwrap();
/// assert_eq!(m.identifier().len(), 66);
/// assert_eq!(m.caveat_count(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacaroonRef<'a> {
    location: Option<&'a [u8]>,
    identifier: &'a [u8],
    caveats: &'a [u8],
    caveat_count: usize,
    signature: [u8; 32],
    /// Where the first [`INLINE_CAVEATS`] caveat ids sit in `caveats`, so
    /// iterating them (for the signature, then the satisfiers) re-parses nothing.
    spans: [(u16, u16); INLINE_CAVEATS],
}

/// How many caveat positions a [`MacaroonRef`] remembers.
const INLINE_CAVEATS: usize = 8;

#[derive(Clone)]
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, MacaroonError> {
        // Tags and lengths below 128 (nearly all of them) are one byte.
        if let Some(&b) = self.b.get(self.i)
            && b < 0x80
        {
            self.i += 1;
            return Ok(u64::from(b));
        }
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7).take(10) {
            let byte = *self.b.get(self.i).ok_or(MacaroonError::Truncated)?;
            self.i += 1;
            // The 10th byte holds only bit 63: anything more overflows
            // (Go's `binary.Uvarint`, which go-macaroon uses, rejects it too).
            if shift == 63 && byte > 1 {
                return Err(MacaroonError::Malformed);
            }
            v |= u64::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or(MacaroonError::Malformed)?;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(MacaroonError::Malformed)
    }

    /// Reads one field: `(tag, data)`; EOS has empty data.
    #[inline]
    fn field(&mut self) -> Result<(u64, &'a [u8]), MacaroonError> {
        let tag = self.varint()?;
        if tag == FIELD_EOS {
            return Ok((FIELD_EOS, &[]));
        }
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| MacaroonError::FieldTooLarge)?;
        if len > MAX_FIELD_BYTES {
            return Err(MacaroonError::FieldTooLarge);
        }
        let end = self.i.checked_add(len).ok_or(MacaroonError::Truncated)?;
        let data = self.b.get(self.i..end).ok_or(MacaroonError::Truncated)?;
        self.i = end;
        Ok((tag, data))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
}

/// One first-party caveat as stored: its optional location, its id bytes, and
/// the reader position just after the id.
type RawCaveat<'a> = (Option<&'a [u8]>, &'a [u8], usize);

/// Reads one caveat section (after its first tag is known not to be EOS).
#[inline]
fn read_caveat<'a>(r: &mut Reader<'a>) -> Result<RawCaveat<'a>, MacaroonError> {
    let (mut tag, mut data) = r.field()?;
    let mut loc = None;
    if tag == FIELD_LOCATION {
        loc = Some(data);
        (tag, data) = r.field()?;
    }
    if tag != FIELD_IDENTIFIER {
        return Err(MacaroonError::Malformed);
    }
    let id = data;
    let id_end = r.i;
    let (tag, _) = r.field()?;
    match tag {
        FIELD_EOS => Ok((loc, id, id_end)),
        FIELD_VID => Err(MacaroonError::ThirdPartyCaveat),
        _ => Err(MacaroonError::Malformed),
    }
}

impl<'a> MacaroonRef<'a> {
    /// Decodes V2 binary bytes, bounding every size.
    ///
    /// ```
    /// use pay402_core::l402::{MacaroonRef, macaroon::MacaroonError};
    /// assert_eq!(MacaroonRef::decode(&[1, 2, 3]), Err(MacaroonError::UnsupportedVersion));
    /// assert_eq!(MacaroonRef::decode(&[2, 2]), Err(MacaroonError::Truncated));
    /// ```
    pub fn decode(bytes: &'a [u8]) -> Result<MacaroonRef<'a>, MacaroonError> {
        if bytes.len() > MAX_MACAROON_BYTES {
            return Err(MacaroonError::TooLarge);
        }
        match bytes.first() {
            Some(&V2) => {}
            Some(_) => return Err(MacaroonError::UnsupportedVersion),
            None => return Err(MacaroonError::Truncated),
        }
        let mut r = Reader { b: bytes, i: 1 };
        let (mut tag, mut data) = r.field()?;
        let mut location = None;
        if tag == FIELD_LOCATION {
            location = Some(data);
            (tag, data) = r.field()?;
        }
        if tag != FIELD_IDENTIFIER {
            return Err(MacaroonError::Malformed);
        }
        let identifier = data;
        if r.field()?.0 != FIELD_EOS {
            return Err(MacaroonError::Malformed);
        }
        let caveats_start = r.i;
        let mut caveat_count = 0;
        let mut spans = [(0u16, 0u16); INLINE_CAVEATS];
        loop {
            match r.peek() {
                None => return Err(MacaroonError::Truncated),
                Some(0) => break,
                Some(_) => {
                    if caveat_count == MAX_CAVEATS {
                        return Err(MacaroonError::TooManyCaveats);
                    }
                    let (_, id, id_end) = read_caveat(&mut r)?;
                    if let Some(span) = spans.get_mut(caveat_count) {
                        // Offsets fit in u16: the whole macaroon is at most 8 KiB.
                        let start = id_end - id.len() - caveats_start;
                        *span = (start as u16, id.len() as u16);
                    }
                    caveat_count += 1;
                }
            }
        }
        let caveats = &bytes[caveats_start..r.i];
        r.i += 1; // EOS ending the caveat list
        let (tag, sig) = r.field().map_err(|e| match e {
            MacaroonError::Truncated => MacaroonError::BadSignature,
            e => e,
        })?;
        if tag != FIELD_SIGNATURE || sig.len() != 32 {
            return Err(MacaroonError::BadSignature);
        }
        if r.i != bytes.len() {
            return Err(MacaroonError::TrailingBytes);
        }
        let mut signature = [0u8; 32];
        signature.copy_from_slice(sig);
        Ok(MacaroonRef {
            location,
            identifier,
            caveats,
            caveat_count,
            signature,
            spans,
        })
    }

    /// The location hint, if any (not covered by the signature).
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let m = Macaroon::new(&RootKey::from_bytes([0; 32]), Some("lsat"), b"id");
    /// let bytes = m.encode_v2();
    /// let r = pay402_core::l402::MacaroonRef::decode(&bytes).unwrap();
    /// assert_eq!(r.location(), Some(&b"lsat"[..]));
    /// ```
    pub fn location(&self) -> Option<&'a [u8]> {
        self.location
    }

    /// The identifier bytes.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let bytes = Macaroon::new(&RootKey::from_bytes([0; 32]), None, b"id").encode_v2();
    /// assert_eq!(pay402_core::l402::MacaroonRef::decode(&bytes).unwrap().identifier(), b"id");
    /// ```
    pub fn identifier(&self) -> &'a [u8] {
        self.identifier
    }

    /// The number of caveats.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let mut m = Macaroon::new(&RootKey::from_bytes([0; 32]), None, b"id");
    /// m.add_first_party_caveat("a=b");
    /// let bytes = m.encode_v2();
    /// assert_eq!(pay402_core::l402::MacaroonRef::decode(&bytes).unwrap().caveat_count(), 1);
    /// ```
    pub fn caveat_count(&self) -> usize {
        self.caveat_count
    }

    /// The caveat ids, in order.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let mut m = Macaroon::new(&RootKey::from_bytes([0; 32]), None, b"id");
    /// m.add_first_party_caveat("a=b");
    /// let bytes = m.encode_v2();
    /// let r = pay402_core::l402::MacaroonRef::decode(&bytes).unwrap();
    /// assert_eq!(r.caveats().collect::<Vec<_>>(), [b"a=b"]);
    /// ```
    pub fn caveats(&self) -> Caveats<'a> {
        Caveats {
            r: Reader {
                b: self.caveats,
                i: 0,
            },
            spans: self.spans,
            next: 0,
            count: self.caveat_count,
        }
    }

    /// The caveat packets as encoded (what the signature chain covers beside
    /// the identifier), for comparing two macaroons.
    pub(crate) fn raw_caveats(&self) -> &'a [u8] {
        self.caveats
    }

    /// The signature.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let m = Macaroon::new(&RootKey::from_bytes([0; 32]), None, b"id");
    /// let bytes = m.encode_v2();
    /// assert_eq!(pay402_core::l402::MacaroonRef::decode(&bytes).unwrap().signature(), m.signature());
    /// ```
    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

    /// Whether the signature chain from `key` matches, compared in constant time.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let root = RootKey::from_bytes([5; 32]);
    /// let bytes = Macaroon::new(&root, None, b"id").encode_v2();
    /// let m = pay402_core::l402::MacaroonRef::decode(&bytes).unwrap();
    /// assert!(m.verify_signature(&root.derive()));
    /// assert!(!m.verify_signature(&RootKey::from_bytes([6; 32]).derive()));
    /// ```
    pub fn verify_signature(&self, key: &MacaroonKey) -> bool {
        let sig = signature_chain(key, self.identifier, self.caveats());
        crate::ct::eq32(&sig, &self.signature)
    }

    /// Copies into an owned [`Macaroon`].
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let m = Macaroon::new(&RootKey::from_bytes([0; 32]), None, b"id");
    /// let bytes = m.encode_v2();
    /// assert_eq!(pay402_core::l402::MacaroonRef::decode(&bytes).unwrap().to_owned(), m);
    /// ```
    pub fn to_owned(&self) -> Macaroon {
        Macaroon {
            location: self.location.map(<[u8]>::to_vec),
            identifier: self.identifier.to_vec(),
            caveats: self.caveats().map(<[u8]>::to_vec).collect(),
            signature: self.signature,
        }
    }
}

/// Iterator over the caveat ids of a [`MacaroonRef`].
#[derive(Debug, Clone)]
pub struct Caveats<'a> {
    r: Reader<'a>,
    spans: [(u16, u16); INLINE_CAVEATS],
    next: usize,
    count: usize,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("at", &self.i).finish()
    }
}

impl<'a> Iterator for Caveats<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.count <= INLINE_CAVEATS {
            let &(start, len) = self
                .spans
                .get(self.next)
                .filter(|_| self.next < self.count)?;
            self.next += 1;
            let start = usize::from(start);
            return self.r.b.get(start..start + usize::from(len));
        }
        if self.r.i >= self.r.b.len() {
            return None;
        }
        // The section was validated by `decode`; a failure here ends iteration.
        read_caveat(&mut self.r).ok().map(|(_, id, _)| id)
    }
}

/// An owned first-party macaroon, for minting and attenuation.
///
/// ```
/// use pay402_core::l402::{Macaroon, RootKey};
/// let root = RootKey::from_bytes([1; 32]);
/// let mut m = Macaroon::new(&root, Some("lsat"), b"identifier");
/// m.add_first_party_caveat("services=api:0");
/// let b64 = m.to_base64();
/// let back = Macaroon::from_base64(&b64).unwrap();
/// assert_eq!(back, m);
/// assert!(back.verify_signature(&root.derive()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Macaroon {
    location: Option<Vec<u8>>,
    identifier: Vec<u8>,
    caveats: Vec<Vec<u8>>,
    signature: [u8; 32],
}

/// Why a base64 macaroon could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacaroonDecodeError {
    /// Bad base64.
    #[error(transparent)]
    Base64(#[from] b64::Base64Error),
    /// Bad macaroon bytes.
    #[error(transparent)]
    Macaroon(#[from] MacaroonError),
}

impl Macaroon {
    /// Mints a macaroon with the go-macaroon key derivation.
    ///
    /// ```
    /// use pay402_core::l402::{Macaroon, RootKey};
    /// let m = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id");
    /// assert!(m.caveats().is_empty());
    /// ```
    pub fn new(root_key: &RootKey, location: Option<&str>, identifier: &[u8]) -> Macaroon {
        Macaroon::with_key(&root_key.derive(), location, identifier)
    }

    /// Mints with an already derived key (or a root key of another length, see
    /// [`MacaroonKey::derive_from`]).
    ///
    /// ```
    /// use pay402_core::l402::{Macaroon, MacaroonKey};
    /// let m = Macaroon::with_key(&MacaroonKey::derive_from(b"secret"), Some("location"), b"id");
    /// assert_eq!(m.location(), Some(&b"location"[..]));
    /// ```
    pub fn with_key(key: &MacaroonKey, location: Option<&str>, identifier: &[u8]) -> Macaroon {
        Macaroon {
            location: location.map(|l| l.as_bytes().to_vec()),
            identifier: identifier.to_vec(),
            caveats: Vec::new(),
            signature: hmac32(&key.0, identifier),
        }
    }

    /// Adds a first-party caveat, extending the signature chain.
    ///
    /// Anyone holding a macaroon can add caveats (attenuate it); nobody can
    /// remove one without the root key.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let mut m = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id");
    /// let before = *m.signature();
    /// m.add_first_party_caveat("x=1");
    /// assert_ne!(before, *m.signature());
    /// ```
    pub fn add_first_party_caveat(&mut self, caveat: impl AsRef<[u8]>) -> &mut Macaroon {
        let c = caveat.as_ref();
        self.signature = hmac32(&self.signature, c);
        self.caveats.push(c.to_vec());
        self
    }

    /// The location, if any.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// assert_eq!(Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id").location(), None);
    /// ```
    pub fn location(&self) -> Option<&[u8]> {
        self.location.as_deref()
    }

    /// The identifier.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// assert_eq!(Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id").identifier(), b"id");
    /// ```
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// The caveats, in order.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let mut m = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id");
    /// m.add_first_party_caveat("a=1");
    /// assert_eq!(m.caveats(), [b"a=1".to_vec()]);
    /// ```
    pub fn caveats(&self) -> &[Vec<u8>] {
        &self.caveats
    }

    /// The signature.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// assert_eq!(Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id").signature().len(), 32);
    /// ```
    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

    /// Whether the signature chain from `key` matches (constant time).
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let root = RootKey::from_bytes([1; 32]);
    /// assert!(Macaroon::new(&root, None, b"id").verify_signature(&root.derive()));
    /// ```
    pub fn verify_signature(&self, key: &MacaroonKey) -> bool {
        let sig = signature_chain(
            key,
            &self.identifier,
            self.caveats.iter().map(Vec::as_slice),
        );
        crate::ct::eq32(&sig, &self.signature)
    }

    /// Encodes to the V2 binary format.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let bytes = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id").encode_v2();
    /// assert_eq!(bytes[0], 2);
    /// ```
    pub fn encode_v2(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.identifier.len()
                + self.location.as_ref().map_or(0, Vec::len)
                + self.caveats.iter().map(|c| c.len() + 4).sum::<usize>()
                + 36,
        );
        out.push(V2);
        if let Some(loc) = &self.location {
            put_field(&mut out, FIELD_LOCATION, loc);
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.identifier);
        out.push(0);
        for c in &self.caveats {
            put_field(&mut out, FIELD_IDENTIFIER, c);
            out.push(0);
        }
        out.push(0);
        put_field(&mut out, FIELD_SIGNATURE, &self.signature);
        out
    }

    /// Encodes to standard padded base64 of the V2 bytes (what L402 sends).
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let s = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id").to_base64();
    /// assert!(s.starts_with("Ag"));
    /// ```
    pub fn to_base64(&self) -> String {
        b64::encode_std(&self.encode_v2())
    }

    /// Decodes V2 bytes.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// let m = Macaroon::new(&RootKey::from_bytes([1; 32]), None, b"id");
    /// assert_eq!(Macaroon::decode_v2(&m.encode_v2()).unwrap(), m);
    /// ```
    pub fn decode_v2(bytes: &[u8]) -> Result<Macaroon, MacaroonError> {
        MacaroonRef::decode(bytes).map(|m| m.to_owned())
    }

    /// Decodes base64 (any of the four flavours) of V2 bytes.
    ///
    /// ```
    /// # use pay402_core::l402::{Macaroon, RootKey};
    /// assert!(Macaroon::from_base64("not base64!").is_err());
    /// ```
    pub fn from_base64(s: &str) -> Result<Macaroon, MacaroonDecodeError> {
        let bytes = b64::decode_any(s, MAX_MACAROON_BYTES)?;
        Ok(Macaroon::decode_v2(&bytes)?)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, tag: u64, data: &[u8]) {
    put_varint(out, tag);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}
