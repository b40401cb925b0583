//! Cross-check against an independent implementation: the `macaroon` crate
//! (macaroon-rs 0.3, libsodium HMAC). Its `MacaroonKey::generate(root)` is the
//! go-macaroon derivation, so both implementations must agree on every byte.

use pay402_core::l402::{Identifier, Macaroon, MacaroonKey, MacaroonRef, RootKey, TokenId};
use pay402_core::lightning::PaymentHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ITERATIONS: usize = 48;

fn init() {
    macaroon::initialize().unwrap();
}

fn random_caveat(rng: &mut StdRng) -> String {
    const CONDS: [&str; 6] = [
        "services",
        "api_valid_until",
        "api_capabilities",
        "expiration",
        "x",
        "request",
    ];
    let cond = CONDS[rng.gen_range(0..CONDS.len())];
    let len = rng.gen_range(0..64);
    let value: String = (0..len)
        .map(|_| char::from(rng.gen_range(0x20u8..0x7f)))
        .collect();
    format!("{cond}={value}")
}

fn random_location(rng: &mut StdRng) -> Option<String> {
    match rng.gen_range(0..3) {
        0 => None,
        1 => Some("lsat".to_owned()),
        _ => Some(format!("https://h{}.example/{}", rng.r#gen::<u16>(), "é")),
    }
}

fn random_identifier(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_bool(0.5) {
        Identifier::new(PaymentHash(rng.r#gen()), TokenId(rng.r#gen()))
            .encode()
            .to_vec()
    } else {
        let len = rng.gen_range(1..300);
        (0..len).map(|_| rng.r#gen()).collect()
    }
}

#[test]
fn pay402_minted_verifies_with_macaroon_crate() {
    init();
    let mut rng = StdRng::seed_from_u64(0x402);
    for i in 0..ITERATIONS {
        let root: [u8; 32] = rng.r#gen();
        let loc = random_location(&mut rng);
        let id = random_identifier(&mut rng);
        let n = rng.gen_range(0..8);
        let caveats: Vec<String> = (0..n).map(|_| random_caveat(&mut rng)).collect();

        let mut ours = Macaroon::new(&RootKey::from_bytes(root), loc.as_deref(), &id);
        for c in &caveats {
            ours.add_first_party_caveat(c);
        }
        let b64 = ours.to_base64();

        let theirs = macaroon::Macaroon::deserialize(&b64)
            .unwrap_or_else(|e| panic!("iteration {i}: macaroon crate rejects ours: {e:?}"));
        assert_eq!(theirs.identifier().0, id);
        assert_eq!(theirs.location(), loc);
        assert_eq!(
            theirs.signature().as_ref() as &[u8],
            ours.signature().as_slice()
        );
        assert_eq!(theirs.caveats().len(), caveats.len());
        // Also via their binary entry point.
        let bin = macaroon::Macaroon::deserialize_binary(&ours.encode_v2()).unwrap();
        assert_eq!(bin, theirs);

        let key = macaroon::MacaroonKey::generate(&root);
        let mut verifier = macaroon::Verifier::default();
        for c in &caveats {
            verifier.satisfy_exact(c.as_str().into());
        }
        verifier
            .verify(&theirs, &key, vec![])
            .unwrap_or_else(|e| panic!("iteration {i}: {e:?}"));

        // A verifier missing one caveat's satisfier refuses, proving the
        // caveats really were read.
        if let Some(last) = caveats.last() {
            let mut partial = macaroon::Verifier::default();
            for c in caveats.iter().filter(|c| *c != last) {
                partial.satisfy_exact(c.as_str().into());
            }
            assert!(partial.verify(&theirs, &key, vec![]).is_err());
        }

        // The wrong root key fails on their side too.
        let mut wrong = root;
        wrong[0] ^= 1;
        assert!(
            verifier
                .verify(&theirs, &macaroon::MacaroonKey::generate(&wrong), vec![])
                .is_err()
        );
        // Their raw-bytes key (no derivation) fails: the derivation matters.
        assert!(
            verifier
                .verify(&theirs, &macaroon::MacaroonKey::from(root), vec![])
                .is_err()
        );

        // And their serialization of our macaroon is byte-identical to ours.
        let theirs_b64 = theirs.serialize(macaroon::Format::V2).unwrap();
        assert_eq!(
            pay402_core::b64::decode_any(&theirs_b64, 1 << 16).unwrap(),
            ours.encode_v2()
        );
    }
}

#[test]
fn macaroon_crate_minted_verifies_with_pay402() {
    init();
    let mut rng = StdRng::seed_from_u64(0x1337);
    for i in 0..ITERATIONS {
        let root: [u8; 32] = rng.r#gen();
        let loc = random_location(&mut rng);
        let id = random_identifier(&mut rng);
        let n = rng.gen_range(0..8);
        let caveats: Vec<String> = (0..n).map(|_| random_caveat(&mut rng)).collect();

        let key = macaroon::MacaroonKey::generate(&root);
        let mut theirs = macaroon::Macaroon::create(loc.clone(), &key, id.clone().into()).unwrap();
        for c in &caveats {
            theirs.add_first_party_caveat(c.as_str().into());
        }
        // V2 is URL-safe base64 with padding.
        let b64 = theirs.serialize(macaroon::Format::V2).unwrap();

        let ours = Macaroon::from_base64(&b64)
            .unwrap_or_else(|e| panic!("iteration {i}: pay402 rejects theirs: {e:?}"));
        assert_eq!(ours.identifier(), id.as_slice());
        assert_eq!(ours.location(), loc.as_deref().map(str::as_bytes));
        let want: Vec<Vec<u8>> = caveats.iter().map(|c| c.as_bytes().to_vec()).collect();
        assert_eq!(ours.caveats(), want.as_slice());
        assert_eq!(
            ours.signature().as_slice(),
            theirs.signature().as_ref() as &[u8]
        );
        assert!(ours.verify_signature(&RootKey::from_bytes(root).derive()));
        assert!(ours.verify_signature(&MacaroonKey::derive_from(&root)));
        let mut wrong = root;
        wrong[31] ^= 0x40;
        assert!(!ours.verify_signature(&RootKey::from_bytes(wrong).derive()));

        // Borrowed decode agrees with the owned one.
        let bytes = pay402_core::b64::decode_any(&b64, 1 << 16).unwrap();
        let r = MacaroonRef::decode(&bytes).unwrap();
        assert_eq!(r.to_owned(), ours);
        assert!(r.verify_signature(&RootKey::from_bytes(root).derive()));

        // Re-encoding theirs with pay402 gives the same V2 bytes.
        assert_eq!(ours.encode_v2(), bytes);
        // Minting the same macaroon with pay402 gives the same signature.
        let mut mine = Macaroon::new(&RootKey::from_bytes(root), loc.as_deref(), &id);
        for c in &caveats {
            mine.add_first_party_caveat(c);
        }
        assert_eq!(mine, ours);
    }
}

#[test]
fn macaroon_crate_attenuation_is_seen_by_pay402() {
    // A holder adds a caveat with the other implementation; pay402 verifies
    // the extended chain and sees the caveat.
    init();
    let root = [7u8; 32];
    let mut ours = Macaroon::new(&RootKey::from_bytes(root), Some("lsat"), b"identifier");
    ours.add_first_party_caveat("services=api:0");
    let mut theirs = macaroon::Macaroon::deserialize(ours.to_base64()).unwrap();
    theirs.add_first_party_caveat("api_valid_until=100".into());
    let back = Macaroon::from_base64(&theirs.serialize(macaroon::Format::V2).unwrap()).unwrap();
    assert_eq!(
        back.caveats(),
        [b"services=api:0".to_vec(), b"api_valid_until=100".to_vec()]
    );
    assert!(back.verify_signature(&RootKey::from_bytes(root).derive()));
    let mut expect = ours.clone();
    expect.add_first_party_caveat("api_valid_until=100");
    assert_eq!(back, expect);
}

#[test]
fn macaroon_crate_third_party_caveat_is_unsupported_in_pay402() {
    init();
    let key = macaroon::MacaroonKey::generate(b"root");
    let mut theirs = macaroon::Macaroon::create(None, &key, "id".into()).unwrap();
    theirs.add_third_party_caveat(
        "https://auth.example",
        &macaroon::MacaroonKey::generate(b"other"),
        "caveat-id".into(),
    );
    let b64 = theirs.serialize(macaroon::Format::V2).unwrap();
    assert_eq!(
        Macaroon::from_base64(&b64).unwrap_err(),
        pay402_core::l402::macaroon::MacaroonDecodeError::Macaroon(
            pay402_core::l402::macaroon::MacaroonError::ThirdPartyCaveat
        )
    );
}
