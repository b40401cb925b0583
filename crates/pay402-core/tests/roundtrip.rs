//! Property-style round trips: random macaroons within every limit encode,
//! decode and re-encode identically, in all four base64 flavours.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use pay402_core::l402::macaroon::{
    MAX_CAVEATS, MAX_FIELD_BYTES, MAX_MACAROON_BYTES, MacaroonError,
};
use pay402_core::l402::{Macaroon, MacaroonRef, RootKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.r#gen()).collect()
}

/// A random macaroon whose encoding stays within `MAX_MACAROON_BYTES`.
fn random_macaroon(rng: &mut StdRng) -> (Macaroon, RootKey) {
    let root = RootKey::from_bytes(rng.r#gen());
    let location: Option<String> = match rng.gen_range(0..4) {
        0 => None,
        1 => Some(String::new()),
        2 => Some("lsat".into()),
        _ => Some(
            (0..rng.gen_range(1..200))
                .map(|_| rng.gen_range('\u{20}'..'\u{2fff}'))
                .collect(),
        ),
    };
    // Lengths around the one/two-byte varint boundary are the interesting ones.
    let pick_len = |rng: &mut StdRng, max: usize| match rng.gen_range(0..4) {
        0 => rng.gen_range(0..=max.min(8)),
        1 => rng.gen_range(120..=max.clamp(120, 136)).min(max),
        _ => rng.gen_range(0..=max),
    };
    let id_len = pick_len(rng, 600);
    let id = random_bytes(rng, id_len);
    let mut m = Macaroon::new(&root, location.as_deref(), &id);
    let n = rng.gen_range(0..=MAX_CAVEATS);
    let mut budget = MAX_MACAROON_BYTES - m.encode_v2().len();
    for _ in 0..n {
        if budget < 8 {
            break;
        }
        let len = pick_len(rng, (budget - 8).min(300));
        let cav = if rng.gen_bool(0.5) {
            random_bytes(rng, len)
        } else {
            let v: String = (0..len.saturating_sub(2))
                .map(|_| char::from(rng.gen_range(b'!'..=b'~')))
                .collect();
            format!("x={v}").into_bytes()
        };
        budget -= cav.len() + 4;
        m.add_first_party_caveat(&cav);
    }
    (m, root)
}

#[test]
fn random_macaroons_round_trip() {
    let mut rng = StdRng::seed_from_u64(0xdead_beef);
    let mut max_caveats_seen = 0;
    for i in 0..300 {
        let (m, root) = random_macaroon(&mut rng);
        let bytes = m.encode_v2();
        assert!(bytes.len() <= MAX_MACAROON_BYTES, "iteration {i}");
        max_caveats_seen = max_caveats_seen.max(m.caveats().len());

        // Borrowed decode sees exactly what was minted.
        let r = MacaroonRef::decode(&bytes).unwrap_or_else(|e| panic!("iteration {i}: {e:?}"));
        assert_eq!(r.location(), m.location());
        assert_eq!(r.identifier(), m.identifier());
        assert_eq!(r.caveat_count(), m.caveats().len());
        assert_eq!(r.caveats().collect::<Vec<_>>(), m.caveats());
        assert_eq!(r.signature(), m.signature());
        assert!(r.verify_signature(&root.derive()));

        // encode -> decode -> encode is the identity.
        let owned = r.to_owned();
        assert_eq!(owned, m);
        assert_eq!(owned.encode_v2(), bytes);
        assert_eq!(Macaroon::decode_v2(&bytes).unwrap().encode_v2(), bytes);
        assert!(owned.verify_signature(&root.derive()));

        // Our base64 is standard and padded; all four flavours decode equally.
        let b64 = m.to_base64();
        assert_eq!(b64, STANDARD.encode(&bytes));
        for flavour in [
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes),
        ] {
            let back = Macaroon::from_base64(&flavour).unwrap();
            assert_eq!(back, m, "iteration {i}, {flavour}");
            assert_eq!(back.to_base64(), b64);
        }
    }
    assert!(max_caveats_seen >= 20, "caveat counts not exercised");
}

#[test]
fn size_limits_are_exact() {
    // One field of exactly MAX_FIELD_BYTES is fine; one byte more is not.
    let root = RootKey::from_bytes([1; 32]);
    let id = vec![0xab; MAX_FIELD_BYTES];
    let m = Macaroon::new(&root, None, &id);
    assert_eq!(Macaroon::decode_v2(&m.encode_v2()).unwrap(), m);
    let too_big = Macaroon::new(&root, None, &[0xab; MAX_FIELD_BYTES + 1]).encode_v2();
    assert_eq!(
        MacaroonRef::decode(&too_big),
        Err(MacaroonError::FieldTooLarge)
    );

    // A macaroon of exactly MAX_MACAROON_BYTES decodes; one byte more does not.
    let exact = (0..MAX_FIELD_BYTES)
        .rev()
        .map(|k| {
            let mut m = Macaroon::new(&root, None, &id);
            m.add_first_party_caveat(vec![b'c'; k]);
            m
        })
        .find(|m| m.encode_v2().len() <= MAX_MACAROON_BYTES)
        .unwrap();
    let bytes = exact.encode_v2();
    assert_eq!(bytes.len(), MAX_MACAROON_BYTES);
    assert_eq!(Macaroon::decode_v2(&bytes).unwrap(), exact);
    assert_eq!(Macaroon::from_base64(&exact.to_base64()).unwrap(), exact);
    let mut over = exact.clone();
    over.add_first_party_caveat("");
    let over = over.encode_v2();
    assert!(over.len() > MAX_MACAROON_BYTES);
    assert_eq!(MacaroonRef::decode(&over), Err(MacaroonError::TooLarge));

    // MAX_CAVEATS caveats are fine; one more is not.
    let mut m = Macaroon::new(&root, None, b"id");
    for i in 0..MAX_CAVEATS {
        m.add_first_party_caveat(format!("c={i}"));
    }
    assert_eq!(Macaroon::decode_v2(&m.encode_v2()).unwrap(), m);
    m.add_first_party_caveat("one=more");
    assert_eq!(
        Macaroon::decode_v2(&m.encode_v2()),
        Err(MacaroonError::TooManyCaveats)
    );
}

#[test]
fn varint_boundaries_round_trip() {
    let root = RootKey::from_bytes([2; 32]);
    for len in [0usize, 1, 126, 127, 128, 129, 255, 256, 16_383, 16_384]
        .into_iter()
        .filter(|&l| l <= MAX_FIELD_BYTES)
    {
        let mut m = Macaroon::new(
            &root,
            Some("l".repeat(len.min(300)).as_str()),
            &vec![7; len],
        );
        m.add_first_party_caveat(vec![9; len]);
        let bytes = m.encode_v2();
        // The length prefix takes one byte below 128 and two from 128 on.
        let prefix = if len < 128 { 1 } else { 2 };
        let loc = len.min(300);
        let loc_prefix = if loc < 128 { 1 } else { 2 };
        assert_eq!(
            bytes.len(),
            1 + (1 + loc_prefix + loc) + (1 + prefix + len) + 1 + (1 + prefix + len + 1) + 1 + 34
        );
        assert_eq!(Macaroon::decode_v2(&bytes).unwrap(), m);
        assert!(m.verify_signature(&root.derive()));
    }
}
