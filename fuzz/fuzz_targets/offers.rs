//! The offer reader: every offer of one 402 response
//! (`offer::read_offers`). Input: `Name: value` header lines, an empty
//! line, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::offer::{MAX_OFFERS, Rail, RailChallenge, read_offers};

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = http::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(i) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..i]),
            http::HeaderValue::from_bytes(line[i + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let set = read_offers(&headers, body);
    assert!(set.offers.len() <= MAX_OFFERS);
    assert!(set.skipped.len() <= MAX_OFFERS);
    for o in &set.offers {
        let rail = match &o.challenge {
            RailChallenge::L402(_) => Rail::L402,
            RailChallenge::X402(c) => {
                assert!(c.requirement().is_some());
                Rail::X402
            }
            RailChallenge::X402Mock(c) => {
                assert!(c.component().is_some());
                Rail::X402Mock
            }
            RailChallenge::BitRequests(_) => Rail::BitRequests,
            _ => unreachable!("a new rail needs a case here"),
        };
        assert_eq!(o.rail, rail);
        assert!(!o.label().is_empty());
        let _ = o.amount.to_string();
    }
    for s in &set.skipped {
        assert!(s.name.chars().count() <= 128);
        let _ = (
            pay402_core::problem::Reason::reason(&s.error),
            s.error.is_unknown(),
        );
    }
    // Reading is deterministic.
    assert_eq!(read_offers(&headers, body), set);
});
