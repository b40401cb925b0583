//! BitRequests off-chain `Bitcoin-Transfer` JSON and its `Authorization`
//! signature. Line 1 is the transfer; line 2, if present, the signature;
//! without one the transfer is signed with a fixed key (whose public key the
//! seeds carry) so that decoding past the signature check is reached too.
#![no_main]

use bitcoin::secp256k1::SecretKey;
use libfuzzer_sys::fuzz_target;
use pay402_core::bitreq::AmountRule;
use pay402_core::bitreq::transfer::{parse_compact, sign_header, verify};
use pay402_core::money::Sat;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (transfer, authorization) = match s.split_once('\n') {
        Some((t, a)) => (t, a.to_owned()),
        None => {
            let Ok(key) = SecretKey::from_slice(&[7; 32]) else {
                return;
            };
            (s, sign_header(s, &key))
        }
    };
    let _ = parse_compact(&authorization);
    if let Ok(v) = verify(transfer, &authorization) {
        let _ = (v.id_hex(), v.timestamp_secs());
        for rule in [AmountRule::Exact, AmountRule::AtLeast] {
            let _ = v.check_payment(
                Sat(1000),
                rule,
                Some("merchant"),
                Some("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM"),
            );
        }
    }
});
