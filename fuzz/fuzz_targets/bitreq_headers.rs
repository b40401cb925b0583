//! BitRequests headers, one `Name: value` per input line: the 402 offer
//! (`Price`, `Bitcoin-Address`, `Username`, `Bitcoin-Payment-Channel-Server`)
//! and the proof on the retry (channel token, transaction, transfer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::bitreq::headers::{parse_address, parse_price};
use pay402_core::bitreq::{PaymentInfo, Proof};

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(&[u8], &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], line[i + 1..].trim_ascii()),
            None => (line, &[][..]),
        })
        .collect();
    if let Ok(info) = PaymentInfo::from_pairs(pairs.iter().copied()) {
        let _ = (
            info.supports_onchain(),
            info.supports_transfer(),
            info.supports_channel(),
        );
        let _ = info.address(bitcoin::Network::Bitcoin);
        // What is read is written back as headers that read the same.
        let again =
            PaymentInfo::from_pairs(info.header_pairs()).expect("re-read of written headers");
        assert_eq!(again, info);
        let mut map = http::HeaderMap::new();
        if info.insert_into(&mut map).is_ok() {
            assert_eq!(PaymentInfo::from_header_map(&map).as_ref(), Ok(&info));
        }
    }
    if let Ok(proof) = Proof::from_pairs(pairs.iter().copied()) {
        let _ = proof.method();
        let again = Proof::from_pairs(proof.header_pairs()).expect("re-read of written proof");
        assert_eq!(again, proof);
    }
    for (_, v) in &pairs {
        if let Ok(s) = std::str::from_utf8(v) {
            let _ = parse_price(s);
            for network in [bitcoin::Network::Bitcoin, bitcoin::Network::Regtest] {
                let _ = parse_address(s, network);
            }
        }
    }
});
