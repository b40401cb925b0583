//! The generic RFC 9110 challenge-list and credentials parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::auth_header::{parse_challenges, split_credentials};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenges) = parse_challenges(s) {
        for c in &challenges {
            let _ = c.has_duplicate_params();
            for p in &c.params {
                assert!(c.param(p.name).is_some());
            }
        }
    }
    let _ = split_credentials(s);
});
