//! MPP `Authorization: Payment <token>` (one header value per input line):
//! token search among other schemes, strict base64url, the credential JSON,
//! then the Lightning and EVM charge verifiers under the fixed secret the
//! seeds were minted with (so the fuzzer starts past the HMAC check).
//! Every other line is also read as a `Payment-Receipt`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pay402_core::lightning::Network;
use pay402_core::mpp::methods::{evm, lightning};
use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Credential, Receipt, credential};
use pay402_core::time::UnixTime;
use pay402_core::x402::TokenAmount;

/// The secret of the protocol reference's derived vector (§12.5).
const SECRET: &[u8] = b"pay402-mpp-derived-vector-secret-0001";

fn keys() -> &'static ChallengeKeys {
    static K: OnceLock<ChallengeKeys> = OnceLock::new();
    K.get_or_init(|| ChallengeKeys::new(ChallengeKey::new(SECRET).expect("32+ bytes")))
}

fn terms() -> &'static evm::EvmTerms {
    static T: OnceLock<evm::EvmTerms> = OnceLock::new();
    T.get_or_init(|| {
        evm::EvmTerms::new(
            31337,
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
                .parse()
                .expect("address"),
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
                .parse()
                .expect("address"),
            "USD Coin",
            "2",
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let now = UnixTime(1_767_225_900);
    if let Ok(Some(token)) = credential::find_token(lines.iter().copied()) {
        let mut buf = Vec::new();
        if let Ok(cred) = Credential::decode(token, &mut buf) {
            // A decoded credential re-encodes to one that decodes the same.
            let again = Credential::encode(&cred.challenge, cred.payload, cred.source.as_deref())
                .expect("re-encode");
            let mut buf2 = Vec::new();
            let back =
                Credential::decode(&again["Payment ".len()..], &mut buf2).expect("re-decode");
            assert_eq!(back.challenge, cred.challenge);
            assert_eq!(back.payload.get(), cred.payload.get());
            let ln =
                lightning::ChargeVerifier::new(keys(), "api.example.com", 100, Network::Regtest);
            if let Ok(v) = ln.verify(&cred, now) {
                assert!(v.expires_at > now);
                assert_eq!(v.challenge_id, cred.challenge.id);
            }
            let ev = evm::ChargeVerifier::new(
                keys(),
                "api.example.com",
                terms(),
                TokenAmount::from_u64(10_000),
            );
            let _ = ev.verify(&cred, now);
        }
    }
    for l in lines.iter().step_by(2) {
        if let Ok(s) = std::str::from_utf8(l) {
            if let Ok(r) = Receipt::decode(s) {
                assert_eq!(Receipt::decode(&r.encode()).expect("receipt round trip"), r);
            }
        }
    }
});
