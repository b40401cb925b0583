//! MPP `WWW-Authenticate: Payment` lists (one header line per input line),
//! then what a client does with each offer: the Lightning and EVM charge
//! checks. Also `Accept-Payment`, RFC 3339 dates and body digests, which are
//! read from the same kind of header text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::mpp::methods::{evm, lightning};
use pay402_core::mpp::{AcceptPayment, ChallengeList, digest, rfc3339};
use pay402_core::time::UnixTime;
use pay402_core::x402::TokenAmount;

fuzz_target!(|data: &[u8]| {
    let list = ChallengeList::parse(data.split(|&b| b == b'\n'));
    for c in list.challenges() {
        c.check().expect("a parsed challenge passes its own checks");
        // Re-emitting a parsed challenge and parsing it again gives it back
        // (when the server-side rules allow emitting it at all).
        if let Ok(line) = c.to_header_value() {
            let again = ChallengeList::parse([line.as_bytes()]);
            assert_eq!(again.challenges(), std::slice::from_ref(c), "{line}");
        }
        let now = UnixTime(1_767_225_900);
        let _ = lightning::check_charge(c, Network::Regtest, now, Msat(u64::MAX));
        let _ = evm::check_charge(
            c,
            84532,
            &Default::default(),
            now,
            TokenAmount::from_u64(u64::MAX),
        );
        let _ = c.expires_at();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = AcceptPayment::parse(s) {
            let again =
                AcceptPayment::parse(&a.to_header_value()).expect("emitted Accept-Payment parses");
            assert_eq!(again, a);
            let _ = a.order(
                list.challenges()
                    .iter()
                    .map(|c| (c.method.as_ref(), c.intent.as_ref())),
            );
        }
        if let Ok(t) = rfc3339::parse(s) {
            // Whole-second UTC times print and parse back to themselves.
            if t.0 < 253_402_300_800 {
                assert_eq!(rfc3339::parse(&rfc3339::format(t)), Ok(t));
            }
        }
        let _ = digest::verify(s, data);
    }
});
