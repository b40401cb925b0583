//! L402/LSAT `Authorization` credentials (one header line per input line),
//! then the server's decode and verification of the presented token:
//! base64, macaroon, identifier, preimage, signature chain, caveats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::l402::{Credential, MacaroonKey, PresentedToken, RequestFacts, VerifyContext};
use pay402_core::time::UnixTime;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(s) = std::str::from_utf8(line)
            && let Ok(c) = Credential::parse(s)
        {
            assert_eq!(c.macaroons().count(), c.macaroon_count());
            // The emitted form parses back to the same credential.
            let again = c.to_header_value();
            let back = Credential::parse(&again).expect("re-parse of an emitted credential");
            assert_eq!(back.first_macaroon(), c.first_macaroon());
            assert_eq!(back.preimage().as_bytes(), c.preimage().as_bytes());
        }
    }
    let Ok(Some(cred)) = Credential::from_headers(data.split(|&b| b == b'\n')) else {
        return;
    };
    let mut buf = Vec::new();
    let Ok(token) = PresentedToken::decode(&cred, &mut buf) else {
        return;
    };
    let _ = token.token_id();
    let key = MacaroonKey::derive_from(&[7; 32]);
    let headers = http::HeaderMap::new();
    let facts = RequestFacts::new(&http::Method::GET, "/paid?x=1", &headers).with_body(b"");
    for strict in [false, true] {
        let ctx = VerifyContext::new("api", UnixTime(1_700_000_000))
            .with_capability("read")
            .with_request(&facts)
            .strict(strict);
        let _ = token.verify(&key, &[], &ctx);
    }
});
