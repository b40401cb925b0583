//! Macaroon V2 binary decoding (borrowed and owned), caveat parsing and
//! verification, and Aperture's identifier; base64 decoding of a macaroon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::l402::caveat::verify_caveats;
use pay402_core::l402::{Caveat, Identifier, Macaroon, MacaroonKey, MacaroonRef, VerifyContext};
use pay402_core::time::UnixTime;

fuzz_target!(|data: &[u8]| {
    let _ = Identifier::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Macaroon::from_base64(s);
    }
    let borrowed = MacaroonRef::decode(data);
    let owned = Macaroon::decode_v2(data);
    // The two decoders accept the same bytes, with the same fields.
    assert_eq!(
        borrowed.is_ok(),
        owned.is_ok(),
        "borrowed {borrowed:?} vs owned {owned:?}"
    );
    let (Ok(m), Ok(o)) = (borrowed, owned) else {
        return;
    };
    assert_eq!(m.identifier(), o.identifier());
    assert_eq!(m.location(), o.location());
    assert_eq!(m.signature(), o.signature());
    assert_eq!(m.caveat_count(), o.caveats().len());
    assert!(m.caveats().eq(o.caveats().iter().map(Vec::as_slice)));
    assert_eq!(m.to_owned(), o);
    // Re-encoding decodes to the same macaroon.
    let re = o.encode_v2();
    assert_eq!(Macaroon::decode_v2(&re).as_ref(), Ok(&o));
    for c in m.caveats() {
        if let Some(c) = Caveat::parse(c) {
            let _ = (c.condition, c.value);
        }
    }
    let _ = Identifier::decode(m.identifier());
    let _ = m.verify_signature(&MacaroonKey::derive_from(&[7; 32]));
    let ctx = VerifyContext::new("api", UnixTime(1_700_000_000)).with_capability("read");
    let _ = verify_caveats(m.caveats(), &[], &ctx);
});
