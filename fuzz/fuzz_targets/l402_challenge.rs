//! L402/LSAT `WWW-Authenticate` challenges (one header line per input line),
//! then what a client does with the chosen one: decode its macaroon and
//! identifier and read its BOLT11 invoice (`check_challenge`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::l402::{ChallengeSet, Scheme, check_challenge};
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;

fuzz_target!(|data: &[u8]| {
    let Ok(set) = ChallengeSet::parse(data.split(|&b| b == b'\n')) else {
        return;
    };
    if let Ok(preferred) = set.l402() {
        assert!(set.all().contains(preferred));
    }
    for c in set.all() {
        // Re-emitting a parsed challenge and parsing it again gives it back.
        // (`to_header_value` does not escape: it is for the base64 macaroons
        // and bech32 invoices a server emits, so values holding a quote or a
        // backslash are left out.)
        let plain = |v: &str| !v.contains(['"', '\\']);
        if plain(c.macaroon()) && plain(c.invoice()) {
            let line = c.to_header_value(c.scheme());
            let again =
                ChallengeSet::parse([line.as_bytes()]).expect("re-parse of an emitted challenge");
            assert_eq!(again.all(), std::slice::from_ref(c));
        }
        assert!(matches!(c.scheme(), Scheme::L402 | Scheme::Lsat));
        for network in [Network::Bitcoin, Network::Regtest] {
            let _ = check_challenge(c, network, UnixTime(1_700_000_000), Msat(u64::MAX));
        }
    }
});
